"""coordinator.feed.panels and wire.Panel: the latest panel per worker, its checks, its event."""

from __future__ import annotations

import base64
import io
import logging
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image

from coordinator.domain.clock import FakeClock
from coordinator.feed.panels import Panels, PanelView, decode_png
from coordinator.feed.render import panel_json
from coordinator.link.registry import DryadLink
from coordinator.link.session import WorkerLog
from coordinator.wire import MAX_PANEL_PNG, PANEL, Panel, WireError
from tests.coordinator.doubles import uuid_of

pytestmark = pytest.mark.anyio

GREEN = (0, 128, 0)


def png(size: tuple[int, int] = (128, 32), lit: int = 0) -> str:
    image = Image.new("1", size)
    for x in range(lit):
        image.putpixel((x, 0), 1)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_keeps_the_newest_panel_per_worker_and_publishes_each() -> None:
    clock, events = FakeClock(), list[PanelView]()
    panels = Panels(clock, events.append)
    w1, w2 = uuid_of(1), uuid_of(2)
    assert panels.get(w1) is None
    await panels.update(w1, Panel(png(), (GREEN, GREEN)))
    clock.advance(timedelta(seconds=1.5))
    await panels.update(w1, Panel(png(lit=5), ((0, 0, 0), GREEN)))
    await panels.update(w2, Panel(png(), ((1, 2, 3), (4, 5, 6))))
    view = panels.get(w1)
    assert view is not None
    assert view.png == base64.b64decode(png(lit=5))
    assert panel_json(view) == {
        "worker": w1,
        "screen": png(lit=5),
        "leds": [[0, 0, 0], [0, 128, 0]],
        "at": "2026-01-01T00:00:01.500Z",
    }
    assert [(e.worker, e.leds[0]) for e in events] == [
        (w1, GREEN),
        (w1, (0, 0, 0)),
        (w2, (1, 2, 3)),
    ]
    assert events[1] is view
    panels.forget(w1)
    assert panels.get(w1) is None and panels.get(w2) is not None


async def test_an_async_publisher_is_awaited_and_a_failing_one_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[PanelView] = []

    async def publish(view: PanelView) -> None:
        seen.append(view)

    panels = Panels(FakeClock(), publish)
    view = await panels.update(uuid_of(1), Panel(png(), (GREEN, GREEN)))
    assert seen == [view]

    def broken(view: PanelView) -> None:
        raise RuntimeError("subscriber gone")

    panels.publish = broken
    await panels.update(uuid_of(1), Panel(png(lit=1), (GREEN, GREEN)))
    assert panels.get(uuid_of(1)) is not None  # kept all the same
    assert "could not publish the panel" in caplog.text


@pytest.mark.parametrize(
    ("screen", "why"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"GIF89a" + bytes(40)).decode(), "not a PNG"),
        (png((2000, 8)), "is not a panel"),
    ],
)
def test_a_screen_that_is_no_small_png_is_refused(screen: str, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode_png(screen)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"leds": [[0, 0, 0], [0, 0, 0]]}, "screen_png_b64 must be a string"),
        ({"screen_png_b64": "x" * (MAX_PANEL_PNG * 2), "leds": []}, "over"),
        ({"screen_png_b64": "", "leds": [[0, 0, 0]]}, "two"),
        ({"screen_png_b64": "", "leds": [[0, 0, 0], [0, 0, 256]]}, "0..255"),
        ({"screen_png_b64": "", "leds": [[0, 0, 0], [0, True, 0]]}, "0..255"),
        ({"screen_png_b64": "", "leds": [[0, 0, 0], "red"]}, "0..255"),
    ],
)
def test_wire_panel_refuses_malformed_params(data: dict[str, Any], why: str) -> None:
    with pytest.raises(WireError, match=why):
        Panel.from_wire(data)


def test_wire_panel_round_trips() -> None:
    panel = Panel(png(), (GREEN, (96, 144, 0)))
    assert Panel.from_wire(panel.to_wire()) == panel
    assert panel.to_wire()["leds"] == [[0, 128, 0], [96, 144, 0]]


class Session:
    """As much of a DryadSession as the link's call dispatch reads."""

    enrolled = True
    uuid = uuid_of(3)
    log = WorkerLog(logging.getLogger("coordinator.link.session"), {"worker": uuid})  # refusals


async def test_the_link_hands_a_dryads_panel_notification_to_the_panels(tmp_path: Any) -> None:
    link = DryadLink(store=None, clock=FakeClock())  # type: ignore[arg-type]
    # Without panels (a coordinator built without them) the report is dropped quietly.
    await link._handle(Session(), PANEL, Panel(png(), (GREEN, GREEN)).to_wire())  # type: ignore[arg-type]
    link.panels = Panels(FakeClock())
    await link._handle(Session(), PANEL, Panel(png(lit=3), (GREEN, GREEN)).to_wire())  # type: ignore[arg-type]
    view = link.panels.get(uuid_of(3))
    assert view is not None and view.png == base64.b64decode(png(lit=3))
    with pytest.raises(WireError):
        await link._handle(Session(), PANEL, {"screen_png_b64": "AAAA", "leds": []})  # type: ignore[arg-type]
