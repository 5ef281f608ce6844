"""The dashboard's routes: the page and its files, and each worker's panel as JSON and PNG."""

from __future__ import annotations

import base64
import re

import pytest

from coordinator.api.dashboard import FILES, STATIC
from coordinator.feed.panels import Panels
from coordinator.wire import Panel
from tests.coordinator.feed.test_panels import GREEN, png
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_the_page_needs_no_token_and_loads_only_from_this_origin(farm: AppFarm) -> None:
    page = await farm.get("/", as_=None)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    for name, kind in STATIC.items():
        answer = await farm.get(f"/dashboard/{name}", as_=None)
        assert answer.status_code == 200 and answer.headers["content-type"] == kind
        assert answer.content == (FILES / name).read_bytes()
        # No CDN, no web font, no script from elsewhere: every URL is this origin's.
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", answer.content), name
    assert b'src="/dashboard/dashboard.js"' in page.content
    assert b'href="/dashboard/dashboard.css"' in page.content


def test_every_module_the_page_imports_is_served() -> None:
    imported = {
        name
        for path in FILES.glob("*.js")
        for name in re.findall(r'from "\./([a-z]+\.js)"', path.read_text())
    }
    assert imported and imported <= set(STATIC)
    assert {p.name for p in FILES.iterdir()} == set(STATIC)  # none left unserved


async def test_only_the_dashboards_own_files_are_served(farm: AppFarm) -> None:
    for name in ("../dashboard.py", "nope.js", "%2e%2e%2fv1.py"):
        answer = await farm.get(f"/dashboard/{name}", as_=None)
        assert answer.status_code == 404, name


async def test_a_panel_is_served_as_json_and_png_to_any_user(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    panels: Panels = farm.app.state.coordinator.panels
    await panels.update(uuid, Panel(png(lit=7), (GREEN, (0, 0, 0))))
    answer = await farm.get(f"/api/v1/workers/{uuid}/panel", as_="bob")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert answer.json() == {
        "worker": uuid,
        "screen": png(lit=7),
        "leds": [[0, 128, 0], [0, 0, 0]],
        "at": "2026-01-01T00:00:00.000Z",
    }
    image = await farm.get(f"/api/v1/workers/{uuid}/panel.png", as_="bob")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == base64.b64decode(png(lit=7))
    assert image.headers["boruta-panel-at"] == "2026-01-01T00:00:00.000Z"


async def test_a_panel_needs_a_token_a_known_worker_and_a_report(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    path = f"/api/v1/workers/{uuid}/panel"
    assert (await farm.get(path, as_=None)).status_code == 401
    missing = await farm.get(path)
    assert missing.status_code == 404
    assert missing.json() == {"message": f"panel of worker {uuid} not found"}
    unknown = await farm.get("/api/v1/workers/00000000-0000-4000-8000-000000000099/panel.png")
    assert unknown.status_code == 404
    assert (await farm.get("/api/v1/workers/not-a-uuid/panel")).status_code == 400
