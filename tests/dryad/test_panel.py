"""Panel: every state's screen as the simulated OLED shows it, LED colours and blinks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from PIL import ImageChops

from coordinator.wire import Display
from dryad import panel as panel_module
from dryad.panel import BLUE, CYAN, GREEN, OFF, PURPLE, RED, WHITE, YELLOW, Panel, time_left
from dryad.states import WorkerState
from hardware import Board, BoardSettings, open_board
from hardware.display import render_text

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    async with open_board("sim", BoardSettings(png_file=tmp_path / "oled.png")) as b:
        yield b


def oled_rows(board: Board) -> list[str]:
    assert board.sim is not None
    return board.sim.firmware.panel.rows()


def leds(board: Board) -> list[tuple[int, int, int]]:
    assert board.sim is not None
    return [tuple(c) for c in board.sim.firmware.state.leds]  # type: ignore[misc]


def assert_shows(board: Board, *lines: str) -> None:
    """The simulated panel's pixels are exactly those of *lines* in the OLED font."""
    assert board.sim is not None
    shown = board.sim.firmware.panel.image()
    expected = render_text(*lines)
    if ImageChops.difference(shown.convert("L"), expected.convert("L")).getbbox() is not None:
        pytest.fail("OLED differs; it shows:\n" + "\n".join(oled_rows(board)))


def save(board: Board, tmp_path: Path, name: str) -> None:
    assert board.sim is not None
    shots = tmp_path / "screens"
    shots.mkdir(exist_ok=True)
    board.sim.firmware.panel.save_png(shots / f"{name}.png")


async def wait_until(board: Board, check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait, without polling, until the simulator's state satisfies *check*."""
    assert board.sim is not None
    with anyio.fail_after(within):
        while not check():
            await board.sim.changed.wait()


RUN_VIEW = Display(
    WorkerState.RUNNING, owner="alice", until=(NOW + timedelta(minutes=47)).isoformat()
)

SCREENS = [
    ("idle", Display(WorkerState.IDLE), ("IDLE", "ready for a job"), (GREEN, GREEN)),
    ("running", RUN_VIEW, ("alice", "47 min left"), (BLUE, BLUE)),
    ("prepare", Display(WorkerState.PREPARE), ("PREPARE", "new job user"), (CYAN, CYAN)),
    ("busy", Display(WorkerState.BUSY), ("BUSY", "to maintenance"), (YELLOW, YELLOW)),
    (
        "failed",
        Display(WorkerState.FAILED, reason="healthcheck stm: no answer from STM"),
        ("FAILED", "healthcheck stm~"),
        (RED, RED),
    ),
    # The wire refuses an unknown state; a view made on the board still draws something.
    (
        "unknown",
        Display("LOST"),  # type: ignore[arg-type]
        ("LOST", "unknown state"),
        ((128, 16, 32), (128, 16, 32)),
    ),
]


@pytest.mark.parametrize(("name", "view", "lines", "colors"), SCREENS, ids=[s[0] for s in SCREENS])
async def test_each_state_has_its_screen_and_colours(
    board: Board,
    tmp_path: Path,
    name: str,
    view: Display,
    lines: tuple[str, ...],
    colors: tuple[tuple[int, int, int], ...],
) -> None:
    panel = Panel(board.display, board.leds, clock=lambda: NOW)
    await panel.show(view)
    save(board, tmp_path, name)
    assert_shows(board, *lines)
    assert leds(board) == list(colors)


async def test_disconnected_and_refused_name_the_coordinator(board: Board, tmp_path: Path) -> None:
    panel = Panel(board.display, board.leds)
    await panel.disconnected("boruta.example:7175")
    save(board, tmp_path, "disconnected")
    assert_shows(board, "NO COORDINATOR", "boruta.example:~")
    assert leds(board) == [PURPLE, PURPLE]
    await panel.refused("boruta:7175")
    save(board, tmp_path, "refused")
    assert_shows(board, "ENROL REFUSED", "boruta:7175")
    assert leds(board) == [RED, PURPLE]


@pytest.mark.parametrize(
    ("message", "lines"),
    [
        ("maintenance", ("maintenance",)),
        ("", ("maintenance",)),
        ("new SD reader", ("MAINTENANCE", "new SD reader")),
        ("swap the SD reader, ask bob", ("swap the SD", "reader, ask bob")),
        ("firmware update in rack 3 by carol", ("firmware update", "in rack 3 by ca~")),
    ],
)
async def test_maintenance_shows_the_message_and_blinks_yellow_alternately(
    board: Board, tmp_path: Path, message: str, lines: tuple[str, ...]
) -> None:
    panel = Panel(board.display, board.leds, period=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(Display(WorkerState.MAINTENANCE, message=message))
        save(board, tmp_path, f"maintenance-{len(message)}")
        assert_shows(board, *lines)
        await wait_until(board, lambda: leds(board) == [YELLOW, OFF])
        await wait_until(board, lambda: leds(board) == [OFF, YELLOW])
        await wait_until(board, lambda: leds(board) == [YELLOW, OFF])
        await panel.show(Display(WorkerState.IDLE))
        assert leds(board) == [GREEN, GREEN]
        await panel.aclose()
    assert leds(board) == [OFF, OFF]
    assert_shows(board, "dryad stopped")


class RecordingLeds:
    """A Leds that records every set_rgb and wakes a waiter after each."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[int, int, int]]] = []
        self.changed = anyio.Event()

    async def set_rgb(self, number: int, color: tuple[int, int, int]) -> None:
        self.calls.append((number, color))
        self.changed.set()
        self.changed = anyio.Event()

    async def maintenance(self) -> None:
        raise AssertionError("the panel owns its blink")

    async def blink(
        self, color: tuple[int, int, int], *, on_time: float = 0.5, off_time: float = 0.5
    ) -> None:
        raise AssertionError("the panel owns its blink")

    async def stop(self) -> None:
        self.calls.append((0, OFF))

    def set_status(self, *, green: bool, red: bool) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.calls) < count:
                await self.changed.wait()


async def test_maintenance_blink_sequence_is_the_originals(board: Board) -> None:
    recording = RecordingLeds()
    panel = Panel(board.display, recording, period=0.001)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(Display(WorkerState.MAINTENANCE, message="maintenance"))
        await recording.wait_for(8)
        cycle = [(2, OFF), (1, YELLOW), (1, OFF), (2, YELLOW)]
        assert recording.calls[:8] == cycle * 2
        tg.cancel_scope.cancel()


async def test_maintenance_twice_then_idle_leaves_no_blink_behind(board: Board) -> None:
    recording = RecordingLeds()
    panel = Panel(board.display, recording, period=0.001)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(Display(WorkerState.MAINTENANCE, message="maintenance"))
        await panel.show(Display(WorkerState.MAINTENANCE, message="again"))
        await recording.wait_for(len(recording.calls) + 4)
        await panel.show(Display(WorkerState.IDLE))
        after_idle = len(recording.calls)
        assert recording.calls[-2:] == [(1, GREEN), (2, GREEN)]
        # Absence can only be shown over time: a leaked blink would write within 20 periods.
        await anyio.sleep(0.02)
        assert len(recording.calls) == after_idle
        tg.cancel_scope.cancel()


async def test_maintenance_before_run_blinks_once_run_starts(board: Board) -> None:
    panel = Panel(board.display, board.leds, period=0.01)
    await panel.show(Display(WorkerState.MAINTENANCE, message="maintenance"))
    assert leds(board) == [OFF, OFF]
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await wait_until(board, lambda: leds(board) == [OFF, YELLOW])
        tg.cancel_scope.cancel()


@pytest.mark.slow
async def test_identify_flashes_white_then_shows_the_state_again(
    board: Board, tmp_path: Path
) -> None:
    panel = Panel(board.display, board.leds, flash=0.005)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(Display(WorkerState.IDLE))
        await panel.identify(0.3)
        save(board, tmp_path, "identify")
        assert_shows(board, ">> IDENTIFY <<", "0.3 s")
        await wait_until(board, lambda: leds(board) == [WHITE, WHITE])
        await wait_until(board, lambda: leds(board) == [OFF, OFF])
        # A view arriving meanwhile is remembered and shown when identify ends.
        await panel.show(Display(WorkerState.PREPARE))
        assert_shows(board, ">> IDENTIFY <<", "0.3 s")
        await wait_until(board, lambda: leds(board) == [CYAN, CYAN])
        assert_shows(board, "PREPARE", "new job user")
        tg.cancel_scope.cancel()


async def test_identify_needs_run(board: Board) -> None:
    with pytest.raises(RuntimeError, match=r"Panel\.run"):
        await Panel(board.display, board.leds).identify(1)


async def test_running_screen_counts_down_every_refresh(board: Board) -> None:
    times = [NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=46, seconds=30)]

    def clock() -> datetime:
        return times.pop(0) if len(times) > 1 else times[0]

    panel = Panel(board.display, board.leds, clock=clock, refresh=0.001)
    await panel.show(RUN_VIEW)
    assert_shows(board, "alice", "47 min left")
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await wait_until(board, lambda: oled_rows(board) == oled_rows_of("alice", "1 min left"))
        tg.cancel_scope.cancel()


def oled_rows_of(*lines: str) -> list[str]:
    image = render_text(*lines)
    return [
        "".join("#" if image.getpixel((x, y)) else "." for x in range(image.width))
        for y in range(image.height)
    ]


async def test_without_leds_only_the_oled_speaks(board: Board) -> None:
    panel = Panel(board.display, None)
    async with anyio.create_task_group() as tg:
        await tg.start(panel.run)
        await panel.show(Display(WorkerState.MAINTENANCE, message="maintenance"))
        await panel.show(Display(WorkerState.FAILED, reason="x"))
        assert_shows(board, "FAILED", "x")
        await panel.aclose()
    assert leds(board) == [OFF, OFF]


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (47, "47 min left"),
        (0.5, "1 min left"),
        (-1, "time is up"),
        (125, "2 h 05 min left"),
    ],
)
def test_time_left(minutes: float, text: str) -> None:
    assert time_left((NOW + timedelta(minutes=minutes)).isoformat(), NOW) == text


def test_time_left_of_odd_times() -> None:
    assert time_left("2025-03-01T12:10:00Z", NOW) == "10 min left"
    assert time_left("2025-03-01T12:10:00", NOW) == "10 min left"
    assert time_left("", NOW) == "no time limit"
    assert time_left("tomorrow", NOW) == "until tomorrow"


def test_fit_keeps_lines_printable_and_short() -> None:
    assert panel_module.fit("zażółć\tgęślą  jaźń") == "za???? g??l? ja~"
    assert len(panel_module.fit("x" * 40)) == 16
