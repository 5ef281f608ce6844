"""The panel reports what it draws; the agent sends it as a debounced ``panel`` notification."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from PIL import Image, ImageChops

from coordinator import wire
from dryad.agent import PANEL_INTERVAL, Agent
from dryad.errors import LinkError
from dryad.panel import GREEN, OFF, YELLOW, Panel
from dryad.states import LinkState, WorkerState
from hardware import Board, BoardSettings, open_board
from hardware.display import render_text
from tests.dryad.test_agent import FakeHealth, FakeUsers

pytestmark = pytest.mark.anyio

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    async with open_board("sim", BoardSettings(png_file=tmp_path / "oled.png")) as b:
        yield b


def screen_of(report: wire.Panel) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(report.screen_png_b64)))


def shows(report: wire.Panel, *lines: str) -> bool:
    image = screen_of(report).convert("L")
    return ImageChops.difference(image, render_text(*lines).convert("L")).getbbox() is None


class Recorder:
    """A link that is up (or not) and keeps every notification."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[wire.Panel] = []
        self.arrived = anyio.Event()

    async def call(self, method: wire.Method[P, R], params: P) -> R:
        return method.result.from_wire(None)

    async def notify(self, method: wire.Method[P, Any], params: P) -> None:
        if not self.connected:
            raise LinkError("not connected")
        assert method == wire.PANEL and isinstance(params, wire.Panel)
        self.sent.append(wire.Panel.from_wire(params.to_wire()))
        self.arrived.set()
        self.arrived = anyio.Event()

    async def next(self) -> wire.Panel:
        with anyio.fail_after(5):
            await self.arrived.wait()
        return self.sent[-1]


async def test_the_panel_reports_its_screen_and_leds_after_each_change(board: Board) -> None:
    panel = Panel(board.display, board.leds, period=0.05)
    changes: list[wire.Panel] = []
    seen = anyio.Event()

    def note() -> None:
        nonlocal seen
        changes.append(panel.report())
        seen.set()
        seen = anyio.Event()

    panel.watch(note)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(wire.Display(WorkerState.IDLE))
        assert shows(changes[-1], "IDLE", "ready for a job")
        assert changes[-1].leds == (GREEN, GREEN)
        assert screen_of(changes[-1]).size == (128, 32)
        # The maintenance blink reports each step: one LED yellow, then the other.
        await panel.show(wire.Display(WorkerState.MAINTENANCE, message="new SD card"))
        with anyio.fail_after(5):
            while not {(YELLOW, OFF), (OFF, YELLOW)} <= {c.leds for c in changes}:
                await seen.wait()
        assert shows(changes[-1], "MAINTENANCE", "new SD card")
        tg.cancel_scope.cancel()
    await panel.aclose()
    assert shows(changes[-1], "dryad stopped") and changes[-1].leds == (OFF, OFF)


async def test_a_watcher_that_fails_does_not_stop_the_panel(board: Board) -> None:
    panel = Panel(board.display, board.leds)

    def broken() -> None:
        raise RuntimeError("mirror broken")

    panel.watch(broken)
    await panel.show(wire.Display(WorkerState.IDLE))
    assert shows(panel.report(), "IDLE", "ready for a job")


@pytest.mark.slow
async def test_the_agent_sends_the_newest_panel_at_most_every_interval(board: Board) -> None:
    link = Recorder()
    panel = Panel(board.display, board.leds)
    agent = Agent(link, panel, FakeUsers(), FakeHealth(), coordinator="c:7175")
    async with anyio.create_task_group() as tg:
        await tg.start(agent.run)
        await agent.handle(wire.DISPLAY, wire.Display(WorkerState.IDLE).to_wire())
        first = await link.next()
        assert shows(first, "IDLE", "ready for a job") and first.leds == (GREEN, GREEN)
        # A burst of changes costs at most one report per interval, the last screen last.
        start = anyio.current_time()
        for owner in ("a", "b", "c", "d", "e"):
            await agent.handle(
                wire.DISPLAY, wire.Display(WorkerState.RUNNING, owner=owner).to_wire()
            )
        drawing = anyio.current_time() - start  # long on a loaded machine: allow for it
        await link.next()
        await anyio.sleep(PANEL_INTERVAL * 2)
        burst = link.sent[1:]
        assert 1 <= len(burst) <= drawing / PANEL_INTERVAL + 2
        assert shows(burst[-1], "e", "no time limit")
        tg.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_panel_drawn_while_away_is_sent_on_reconnection(board: Board) -> None:
    link = Recorder()
    link.connected = False
    panel = Panel(board.display, board.leds)
    agent = Agent(link, panel, FakeUsers(), FakeHealth(), coordinator="c:7175")
    async with anyio.create_task_group() as tg:
        await tg.start(agent.run)
        await agent.handle(wire.DISPLAY, wire.Display(WorkerState.FAILED, reason="no SD").to_wire())
        await anyio.sleep(PANEL_INTERVAL * 2)
        assert link.sent == []  # nothing queued up while the link is down
        link.connected = True
        await agent.link_state(LinkState.CONNECTED, "")
        report = await link.next()
        assert shows(report, "FAILED", "no SD")
        tg.cancel_scope.cancel()
