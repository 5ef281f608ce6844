"""The dashboard in Debian's headless Chromium, driven by Playwright, against real processes.

Screenshots go to test-artifacts/dashboard/<test>/ at the repository's root (git-ignored,
replaced on each run); each test prints where.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from tests.e2e.coordinators import run_cli
from tests.e2e.process_farm import ProcessFarm, board, eventually
from tests.e2e.proxy import CuttableProxy
from tests.e2e.several import Group
from tests.pg_cluster import private_cluster

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 420, "height": 860}
VIEWPORT = DESKTOP
SLOW = 30_000  # ms: a real board's state change, over a real link
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SECTIONS = ("rack-section", "queue-section", "history-section")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot directory, emptied; its path is printed."""
    name: str = request.node.name
    where = ARTIFACTS / name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    print(f"\ndashboard screenshots: {where}")
    return where


def new_page(browser: Browser, viewport: dict[str, int] = VIEWPORT) -> tuple[Page, list[str]]:
    """A page; the list collects its script errors."""
    page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: _console(m, errors))
    return page, errors


def log_in(page: Page, url: str, token: str) -> None:
    page.goto(url)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Rack")).to_be_visible()


def open_dashboard(browser: Browser, url: str, token: str) -> tuple[Page, list[str]]:
    """A logged-in page; the list collects the page's script errors."""
    page, errors = new_page(browser)
    log_in(page, url, token)
    return page, errors


def _console(message: ConsoleMessage, errors: list[str]) -> None:
    # Chromium logs every HTTP error answer (a panel not reported yet is 404, bob's admin
    # action 403); the page handles those, and the test checks what it shows for them.
    if message.type == "error" and "server responded with a status" not in message.text:
        errors.append(f"{message.text} ({message.location.get('url')})")


def card(page: Page, uuid: str) -> Locator:
    return page.locator(f'#rack li[data-uuid="{uuid}"]')


def mirror(page: Page, uuid: str) -> Image.Image | None:
    src = card(page, uuid).locator("img.oled").get_attribute("src") or ""
    if not src.startswith("data:image/png;base64,"):
        return None
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def same_screen(page: Page, uuid: str, home: Path) -> bool:
    """The page's mirror shows exactly the pixels the simulated OLED shows (its PNG is x4)."""
    shown = mirror(page, uuid)
    try:
        oled = Image.open(home / "oled.png").convert("L")
    except OSError:
        return False
    if shown is None:
        return False
    big = shown.convert("L").resize(oled.size, Image.Resampling.NEAREST)
    return ImageChops.difference(big, oled).getbbox() is None


def shoot(target: Page | Locator, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    target.screenshot(path=path)
    return path


def shoot_page(page: Page, shots: Path, name: str) -> Path:
    """The whole page, however long: on a phone the history is far below the fold."""
    path = shots / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def record_states(page: Page, uuid: str) -> None:
    """Note every state the card shows, to check the page went through each without a reload."""
    page.evaluate(
        """uuid => {
            const state = document.querySelector(`#rack li[data-uuid="${uuid}"] .state`);
            window.seenStates = [state.textContent];
            new MutationObserver(() => {
                if (window.seenStates.at(-1) !== state.textContent)
                    window.seenStates.push(state.textContent);
            }).observe(state, {childList: true, characterData: true, subtree: true});
        }""",
        uuid,
    )


def test_log_in_watch_the_rack_live_and_act_as_admin(
    farm: ProcessFarm, browser: Browser, shots: Path
) -> None:
    bob = run_cli(farm.db, "user", "add", "bob").splitlines()[-1]
    rpi_home = farm.dryad(1, "rpi4")
    odroid_home = farm.dryad(2, "odroid")
    rpi: str = eventually(lambda: farm.workers().get("rpi4", {}).get("WorkerUUID"))
    odroid: str = eventually(lambda: farm.workers().get("odroid", {}).get("WorkerUUID"))
    page, errors = open_dashboard(browser, farm.coordinator.url, farm.token)
    expect(page.locator("#who")).to_have_text("admin (admin)")

    # Both boards are in the rack in MAINTENANCE, as new dryads are, with their OLED mirrored.
    rpi_card = card(page, rpi)
    expect(rpi_card.locator(".state")).to_have_text("MAINTENANCE")
    expect(card(page, odroid).locator(".state")).to_have_text("MAINTENANCE")
    expect(rpi_card.locator(".link")).to_have_text("connected")
    expect(page.locator("#live")).to_have_text("live")
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)

    # Set IDLE from the page; the card goes through PREPARE to IDLE without a reload.
    page.evaluate("window.notReloaded = true")
    record_states(page, rpi)
    rpi_card.get_by_role("button", name="Idle").click()
    expect(rpi_card.locator(".state")).to_have_text("IDLE", timeout=SLOW)
    seen: list[str] = page.evaluate("window.seenStates")
    assert seen == ["MAINTENANCE", "PREPARE", "IDLE"], seen
    assert page.evaluate("window.notReloaded") is True
    # The mirror follows the board: its IDLE screen and two green LEDs.
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)
    leds = rpi_card.locator(".led")
    eventually(lambda: board(rpi_home).get("leds") == [[0, 128, 0], [0, 128, 0]])
    expect(leds.nth(0)).to_have_attribute("data-rgb", "0,128,0")
    expect(leds.nth(1)).to_have_attribute("data-rgb", "0,128,0")
    expect(page.locator("#history li").first).to_contain_text("PREPARE → IDLE")

    # A job: the card shows its owner and a ticking time left; a second request waits.
    with farm.http() as http:
        http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}, "Priority": 4})
        waiting = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "odroid"}})
        waiting_id = waiting.json()["ReqID"]
    expect(rpi_card.locator(".state")).to_have_text("RUNNING", timeout=SLOW)
    expect(rpi_card.locator(".owner")).to_have_text("admin")
    left = rpi_card.locator(".left")
    first = left.text_content()
    expect(left).not_to_have_text(first or "", timeout=3000)  # it ticks
    queue = page.locator("#queue tr")
    expect(queue).to_have_count(1)
    expect(queue.first).to_contain_text(f"#{waiting_id}")
    expect(queue.first).to_contain_text("odroid")
    eventually(lambda: board(rpi_home).get("leds", [None])[0] == [0, 0, 128])
    expect(leds.nth(0)).to_have_attribute("data-rgb", "0,0,128", timeout=SLOW)
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)  # "admin / N min left"
    shoot(page, shots, "dashboard")
    shoot(page.locator("#rack-section"), shots, "rack")
    shoot(page.locator("#queue-section"), shots, "queue")
    shoot(page.locator("#history-section"), shots, "history")

    # An admin action: identify makes the board blink white, and the mirror shows it.
    odroid_card = card(page, odroid)
    odroid_card.get_by_role("button", name="Identify").click()
    expect(odroid_card.locator(".message")).to_contain_text("blinks for 30 s")
    eventually(lambda: same_screen(page, odroid, odroid_home), 15)  # ">> IDENTIFY <<"
    expect(odroid_card.locator('.led[data-rgb="255,255,255"]').first).to_be_attached(timeout=SLOW)
    shoot(odroid_card, shots, "identify")

    # Groups from the page.
    odroid_card.get_by_role("button", name="Groups…").click()
    odroid_card.get_by_label("Groups (comma-separated)").fill("lab, ci")
    odroid_card.get_by_role("button", name="Save").click()
    expect(odroid_card.locator(".groups .chip")).to_have_text(["ci", "lab"], timeout=SLOW)

    assert not errors, errors
    page.close()

    # A user who is not an admin sees the rack, and no admin button at all.
    page, errors = open_dashboard(browser, farm.coordinator.url, bob)
    expect(page.locator("#who")).to_have_text("bob")
    bob_card = card(page, odroid)
    expect(bob_card.locator(".state")).to_have_text("MAINTENANCE")
    expect(card(page, rpi).locator(".state")).to_have_text("RUNNING")
    expect(page.locator("#rack .actions").first).to_be_attached()
    for action in page.locator("#rack .actions").all():
        expect(action).to_be_hidden()
    expect(page.locator("#rack").get_by_role("button")).to_have_count(0)
    shoot(bob_card, shots, "not-admin")
    assert not errors, errors


def test_a_wrong_token_is_refused_at_the_login_form(
    farm: ProcessFarm, browser: Browser, shots: Path
) -> None:
    page, errors = new_page(browser, PHONE)
    page.goto(farm.coordinator.url)
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert").filter(has_text="not valid")).to_be_visible()
    expect(page.locator("#board-view")).to_be_hidden()
    assert layout(page)["overflowing"] == []  # the form fits a phone
    shoot(page, shots, "login-420")
    assert not errors, errors


# ---- layout, history, health --------------------------------------------------------------

LONG_TYPE = "odroid-xu4-bench-3-with-a-long-name"  # a device type that wraps on a phone

LAYOUT = """ids => {
    const doc = document.documentElement;
    const box = el => {
        const r = el.getBoundingClientRect();
        return {left: r.left, right: r.right, top: r.top + scrollY, bottom: r.bottom + scrollY};
    };
    const out = [...document.querySelectorAll("body *")].filter(el => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && (r.left < -0.5 || r.right > doc.clientWidth + 0.5);
    });
    return {
        sections: ids.map(id => box(document.getElementById(id))),
        width: doc.clientWidth,
        scrollWidth: doc.scrollWidth,
        overflowing: out.map(el => `${el.tagName}.${el.className} ${box(el).right}`),
    };
}"""


def layout(page: Page) -> dict[str, Any]:
    """The three sections' boxes (in page coordinates) and what sticks out sideways."""
    found: dict[str, Any] = page.evaluate(LAYOUT, list(SECTIONS))
    return found


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def busy_farm(farm: ProcessFarm) -> tuple[str, int]:
    """Two boards, one running a job, and two requests waiting for the other one; the
    running board's UUID and its request's ID."""
    farm.dryad(1, "rpi4")
    farm.dryad(2, LONG_TYPE)
    rpi = farm.idle("rpi4")
    eventually(lambda: farm.workers().get(LONG_TYPE))
    with farm.http() as http:
        job = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}, "Priority": 4})
        for priority in (3, 9):
            caps = {"device_type": LONG_TYPE}
            http.post("/api/v1/reqs/", json={"Caps": caps, "Priority": priority})
    eventually(lambda: farm.workers()["rpi4"]["State"] == "RUNNING")
    return rpi, int(job.json()["ReqID"])


def history_ids(farm: ProcessFarm) -> list[int]:
    """The recorded transitions' ids, newest first, as the page lists them."""
    with farm.http() as http:
        return [e["id"] for e in reversed(http.get("/api/v1/history?limit=100").json())]


def page_history(page: Page) -> list[int]:
    ids: list[str] = page.locator("#history li").evaluate_all("l => l.map(e => e.dataset.id)")
    return [int(i) for i in ids]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["420px", "1280px"])
def test_rack_queue_and_history_never_overlap_nor_overflow(
    farm: ProcessFarm, browser: Browser, shots: Path, viewport: dict[str, int]
) -> None:
    rpi, _ = busy_farm(farm)
    page, errors = new_page(browser, viewport)
    log_in(page, farm.coordinator.url, farm.token)
    expect(page.locator("#queue tr")).to_have_count(2)
    expect(card(page, rpi).locator(".owner")).to_have_text("admin")
    found = layout(page)
    rack, queue, history = found["sections"]
    for a, b in ((rack, queue), (rack, history), (queue, history)):
        assert not overlap(a, b), found
    assert found["scrollWidth"] <= found["width"], found
    assert found["overflowing"] == [], found
    if viewport is PHONE:  # one column: rack, then queue, then history
        assert rack["bottom"] <= queue["top"] and queue["bottom"] <= history["top"], found
    else:  # the queue and the history beside the rack
        assert queue["left"] >= rack["right"] and history["left"] >= rack["right"], found
    shoot_page(page, shots, f"farm-{viewport['width']}")
    assert not errors, errors


def test_history_shows_the_recorded_past_then_each_change_once(
    farm: ProcessFarm, browser: Browser, shots: Path, request: pytest.FixtureRequest
) -> None:
    rpi, job = busy_farm(farm)
    page, errors = new_page(browser)
    late: list[int] = []

    def stale_history(route: Route) -> None:
        """Answer the history as it was, after a request was made: the stream's replay
        must bring that request, and only once."""
        answer = route.fetch()
        with farm.http() as http:
            made = http.post("/api/v1/reqs/", json={"Caps": {"device_type": LONG_TYPE}})
            late.append(made.json()["ReqID"])
        route.fulfill(response=answer)

    page.route("**/api/v1/history?limit=*", stale_history)
    host, port = farm.coordinator.url.removeprefix("http://").rstrip("/").split(":")
    network = CuttableProxy((host, int(port)))
    request.addfinalizer(network.close)
    log_in(page, f"http://127.0.0.1:{network.port}/", farm.token)
    history = page.locator("#history li")
    expect(history.filter(has_text="MAINTENANCE → PREPARE")).to_have_count(1)  # before the page
    expect(history.filter(has_text=f"request #{late[0]}: created")).to_have_count(1)
    eventually(lambda: page_history(page) == history_ids(farm), 15)

    # Live: the job ends; each new transition appears once, newest first.
    with farm.http() as http:
        assert http.post(f"/api/v1/reqs/{job}/close").status_code == 204
    expect(card(page, rpi).locator(".state")).to_have_text("IDLE", timeout=SLOW)
    expect(history.filter(has_text="IN PROGRESS → DONE")).to_have_count(1)
    eventually(lambda: page_history(page) == history_ids(farm), 15)

    # Cut off, and back: the stream resumes after the last event it had (Last-Event-ID).
    network.hold()
    expect(page.locator("#live")).not_to_have_text("live", timeout=SLOW)
    with farm.http() as http:
        missed = http.post("/api/v1/reqs/", json={"Caps": {"device_type": LONG_TYPE}})
    network.release()
    expect(page.locator("#live")).to_have_text("live", timeout=SLOW)
    expect(history.filter(has_text=f"request #{missed.json()['ReqID']}: created")).to_have_count(1)
    eventually(lambda: page_history(page) == history_ids(farm), 15)
    shoot(page.locator("#history-section"), shots, "history")
    # Chromium logs the connections the cut broke ("net::ERR_…"); nothing else may fail.
    assert [e for e in errors if "Failed to load resource: net::ERR_" not in e] == [], errors


def failed_sshd(at: datetime) -> dict[str, Any]:
    """A last healthcheck whose critical sshd check failed at ``at``."""
    return {
        "At": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Checks": [
            {"Name": "stm", "Passed": True, "Critical": True, "Detail": "v1.0"},
            {"Name": "sshd", "Passed": False, "Critical": True, "Detail": "refused"},
        ],
    }


def test_an_old_failure_is_muted_once_the_board_is_back_in_service(
    farm: ProcessFarm, browser: Browser, shots: Path
) -> None:
    farm.dryad(1, "rpi4")
    farm.dryad(2, "odroid")
    rpi = farm.idle("rpi4")
    odroid: str = eventually(lambda: farm.workers().get("odroid", {}).get("WorkerUUID"))
    report = failed_sshd(datetime.now(UTC) - timedelta(hours=2))

    def with_failed_check(route: Route) -> None:
        """Both workers' last report: sshd failed 2 h ago, as if the board had failed then
        (the simulated boards' own checks are not under the test's control)."""
        if route.request.url.endswith("/panel"):
            route.continue_()
            return
        answer = route.fetch()
        body = answer.json()
        for worker in body if isinstance(body, list) else [body]:
            worker["Health"] = report
        route.fulfill(response=answer, body=json.dumps(body))

    page, errors = new_page(browser, PHONE)
    page.route("**/api/v1/workers/**", with_failed_check)
    log_in(page, farm.coordinator.url, farm.token)
    idle, maintenance = card(page, rpi).locator(".health"), card(page, odroid).locator(".health")
    expect(idle).to_have_text(
        "last check failed 2 h 0 min ago (before it was put back in service): sshd"
    )
    expect(idle).to_have_class("health old")
    expect(maintenance).to_have_text("1 failed (sshd), 2 h 0 min ago")  # not in service: red
    expect(maintenance).to_have_class("health bad")
    shoot(card(page, rpi), shots, "old-failure-420")
    shoot(card(page, odroid), shots, "failure-420")
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    shoot_page(page, shots, "health-1280")
    assert not errors, errors


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_the_dashboard_works_through_a_follower(tmp_path: Path, browser: Browser) -> None:
    # Two coordinators on one PostgreSQL database; the board links to the follower, and
    # the page is served by the follower: its API calls and event stream are forwarded to
    # the leader, the leader's prepare reaches the board through the follower's link.
    with private_cluster() as pg:
        group = Group(tmp_path, pg.url(pg.create_database()), count=2)
        try:
            group.start_all()
            follower = group.members[1]
            home = group.dryad(0, "rpi4", 22, home=1)
            group.wait(lambda: group.holder(0) is follower, "the board linked to the follower")
            uuid = Group.uuid_of(home)
            page, errors = open_dashboard(browser, follower.url, group.token)
            rpi_card = card(page, uuid)
            expect(rpi_card.locator(".state")).to_have_text("MAINTENANCE", timeout=SLOW)
            expect(rpi_card.locator(".link")).to_have_text("connected")
            expect(page.locator("#live")).to_have_text("live")
            record_states(page, uuid)
            rpi_card.get_by_role("button", name="Idle").click()
            expect(rpi_card.locator(".state")).to_have_text("IDLE", timeout=SLOW)
            seen: list[str] = page.evaluate("window.seenStates")
            assert seen == ["MAINTENANCE", "PREPARE", "IDLE"], seen
            expect(page.locator("#history li").first).to_contain_text("PREPARE → IDLE")
            eventually(lambda: same_screen(page, uuid, home), 15)
            assert not errors, errors
        finally:
            group.stop()
