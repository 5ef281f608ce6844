"""``dryad selftest``: exercise every fitted part of the board and report pass or fail.

A technician runs it (as root, with the dryad service stopped, since the dryad owns the
STM's serial port) on a freshly assembled or suspect board: each part that the profile
has is driven and, where the hardware can say, read back. The table goes to the
terminal and to a short report file meant to be sent as it is (docs/rack.md §selftest).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import anyio
from PIL import Image, ImageDraw

from dryad import __version__
from dryad.settings import Settings
from hardware import Board, BoardSettings, HardwareError, open_board
from hardware.errors import StmUnsupported
from hardware.muxpi import OLED_HEIGHT, OLED_WIDTH
from hardware.stm.protocol import Mux

STEP_TIMEOUT: Final = 15.0  # seconds for one check; a hung STM fails its check, not the run
BUTTON_TIMEOUT: Final = 30.0
OLED_TIMEOUT: Final = 60.0
MAX_CURRENT_MA: Final = 5000  # more than the MuxPi's DUT supply gives: a bad reading
LED_COLOURS: Final = (
    ("red", (128, 0, 0)),
    ("green", (0, 128, 0)),
    ("blue", (0, 0, 128)),
    ("white", (128, 128, 128)),
)
LED_SHOW: Final = 0.3  # seconds each colour stays lit, for the technician's eyes


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Result:
    """One check: which part, what was done, how it went and what was seen."""

    part: str
    check: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0


class CheckFailed(Exception):
    """A part answered, but not as it should; the message says what was seen."""


class StayedDark(CheckFailed):
    """An LED read back dark for a colour: broken, or a single-colour LED without it."""


Say = Callable[[str], None]
T = TypeVar("T")


class SelfTest:
    """The checks of one open board, run in order; parts a profile lacks are skipped.

    :param button: wait for a press of the STM's buttons (False: skipped, e.g. remotely).
    :param button_timeout: seconds to wait for that press before the check fails.
    :param say: where instructions for the technician go (the terminal).
    """

    def __init__(
        self,
        board: Board,
        *,
        button: bool = True,
        button_timeout: float = BUTTON_TIMEOUT,
        say: Say = print,
        led_show: float = LED_SHOW,
    ) -> None:
        self._board = board
        self._button = button
        self._button_timeout = button_timeout
        self._say = say
        self._led_show = led_show
        self.results: list[Result] = []
        self._dark: set[int] = set()  # indexes of results where an LED stayed dark

    @property
    def passed(self) -> bool:
        return all(r.outcome is not Outcome.FAIL for r in self.results)

    async def run(self) -> list[Result]:
        board = self._board
        stm = board.stm
        if board.gpio is not None:
            await self._check("board", "power line (PWR_CTRL) on", self._board_power)
        if stm is None:
            self._skip("stm", "version", f"profile {board.profile} has no STM")
        else:
            await self._check("stm", "version", self._version)
            powered = await self._quietly(stm.power)
            mux = await self._quietly(stm.mux)
            await self._check("dut power", "off, then on", self._power)
            await self._check("current", "reading with DUT power on", self._current)
            await self._check("sd mux", "to DUT, then to test server", self._sd_mux)
            await self._restore(powered, mux)
        if board.leds is None:
            self._skip("leds", "colours", f"profile {board.profile} has no LEDs")
        else:
            for number in (1, 2):
                first = len(self.results)
                for name, rgb in LED_COLOURS:
                    await self._check(f"led {number}", name, partial(self._led, number, rgb))
                self._single_colour(first)
            await self._check("status leds", "green, red", self._status_leds)
        # A frame is many STM commands: more time than one command's check.
        await self._check("oled", "test pattern", self._oled, within=OLED_TIMEOUT)
        if not self._button:
            self._skip("button", "press", "--no-button")
        elif stm is None:
            self._skip("button", "press", f"profile {board.profile} has no button")
        else:
            await self._check("button", "press", self._press, within=self._button_timeout + 5)
        return self.results

    async def _check(
        self,
        part: str,
        check: str,
        step: Callable[[], Awaitable[str]],
        *,
        within: float = STEP_TIMEOUT,
    ) -> None:
        started = time.monotonic()
        try:
            with anyio.fail_after(within):
                detail = await step()
            outcome = Outcome.PASS
        except StmUnsupported as exc:
            # Not fitted (a generic board without a current meter, say): nothing to test.
            outcome, detail = Outcome.SKIP, str(exc)
        except TimeoutError:
            outcome, detail = Outcome.FAIL, f"no answer within {within:.0f} s"
        except (CheckFailed, HardwareError, OSError, ValueError) as exc:
            outcome, detail = Outcome.FAIL, str(exc) or type(exc).__name__
            self._dark.discard(len(self.results))
            if isinstance(exc, StayedDark):
                self._dark.add(len(self.results))
        self.results.append(Result(part, check, outcome, detail, time.monotonic() - started))

    def _single_colour(self, first: int) -> None:
        """An LED that showed some colours and stayed dark for others is a single-colour
        LED (a generic board's plain green one): the colours it lacks are skipped. One
        that stayed dark for every colour is broken, and those checks stay failed."""
        mine = range(first, len(self.results))
        if not any(self.results[i].outcome is Outcome.PASS for i in mine):
            return
        for i in mine:
            if i in self._dark:
                r = self.results[i]
                self.results[i] = Result(
                    r.part, r.check, Outcome.SKIP, "stays dark: not a colour of this LED"
                )

    def _skip(self, part: str, check: str, why: str) -> None:
        self.results.append(Result(part, check, Outcome.SKIP, why))

    async def _quietly(self, read: Callable[[], Awaitable[T]]) -> T | None:
        """A reading to restore afterwards; its failure shows in the checks themselves."""
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                return await read()
        except (TimeoutError, HardwareError, OSError, ValueError):
            return None

    async def _restore(self, powered: bool | None, mux: Mux | None) -> None:
        """Leave DUT power and the SD card as they were found (best effort)."""
        stm = self._board.stm
        assert stm is not None
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                if mux in (Mux.TS, Mux.DUT):
                    await stm.set_mux(mux)
                if powered is False:
                    await stm.power_off()
        except (TimeoutError, HardwareError, OSError):
            pass  # the failed checks already say the STM is unwell

    # ---- the checks; each returns what a technician wants to read ----------------------

    async def _board_power(self) -> str:
        gpio = self._board.gpio
        assert gpio is not None
        if not gpio.powered:
            raise CheckFailed("the MuxPi board is not powered")
        return "on"

    async def _version(self) -> str:
        assert self._board.stm is not None
        version = await self._board.stm.version()
        if not version.strip():
            raise CheckFailed("empty version")
        return version

    async def _power(self) -> str:
        stm = self._board.stm
        assert stm is not None
        await stm.power_off()
        if await stm.power():
            raise CheckFailed("still on after power off")
        await stm.power_on()
        if not await stm.power():
            raise CheckFailed("still off after power on")
        return "off and on, read back"

    async def _current(self) -> str:
        stm = self._board.stm
        assert stm is not None
        if not await stm.power():
            await stm.power_on()
        ma = await stm.current()
        if not 0 <= ma <= MAX_CURRENT_MA:
            raise CheckFailed(f"{ma} mA is outside 0..{MAX_CURRENT_MA} mA")
        return f"{ma} mA" + (" (no DUT drawing?)" if ma == 0 else "")

    async def _sd_mux(self) -> str:
        stm = self._board.stm
        assert stm is not None
        for where in (Mux.DUT, Mux.TS):
            await stm.set_mux(where)
            seen = await stm.mux()
            if seen is not where:
                raise CheckFailed(f"set to {where}, reads {seen}")
        return "dut and ts, read back"

    async def _led(self, number: int, rgb: tuple[int, int, int]) -> str:
        leds = self._board.leds
        assert leds is not None
        await leds.set_rgb(number, rgb)
        detail = "set"
        if self._board.stm is not None:
            seen = await self._board.stm.led(number)
            if (seen.red, seen.green, seen.blue) == (0, 0, 0):
                raise StayedDark(f"set {rgb}, reads dark")
            if (seen.red, seen.green, seen.blue) != rgb:
                raise CheckFailed(f"set {rgb}, reads {seen}")
            detail = "set, read back"
        await anyio.sleep(self._led_show)
        await leds.set_rgb(number, (0, 0, 0))
        return detail

    async def _status_leds(self) -> str:
        leds = self._board.leds
        assert leds is not None
        for green, red in ((True, False), (False, True), (False, False)):
            leds.set_status(green=green, red=red)
            await anyio.sleep(self._led_show)
        return "set (look at the NanoPi)"

    async def _oled(self) -> str:
        display = self._board.display
        pattern = test_pattern()
        try:
            await display.show(pattern)
        except StmUnsupported:
            # Early STM firmware has no draw command: text is all the panel can show.
            await display.show_text("#" * 16, "selftest")
            return "text only: this STM firmware cannot draw (look at the panel)"
        if display.image.convert("1").tobytes() != pattern.tobytes():
            raise CheckFailed("the frame shown is not the test pattern")
        await anyio.sleep(self._led_show)
        await display.show_text("selftest", "look: stripes")
        return "frame and stripes drawn (look at the panel)"

    async def _press(self) -> str:
        stm = self._board.stm
        assert stm is not None
        with stm.presses() as presses:
            self._say(f"Press button 1 or 2 on the MuxPi within {self._button_timeout:.0f} s ...")
            with anyio.move_on_after(self._button_timeout):
                key = await presses.receive()
                return f"button {key} pressed"
        raise CheckFailed(f"no press within {self._button_timeout:.0f} s")


def test_pattern() -> Image.Image:
    """A frame round the edge and full-width stripes: a dead column shows as a gap in
    every stripe, a dead row as a missing stripe or a gap in the frame. Horizontal, as
    the STM draws a row's run in one command: about 50 commands, not hundreds."""
    image = Image.new("1", (OLED_WIDTH, OLED_HEIGHT))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, OLED_WIDTH - 1, OLED_HEIGHT - 1), outline=1)
    for y in range(3, OLED_HEIGHT - 3, 3):
        draw.line((2, y, OLED_WIDTH - 3, y), fill=1)
    return image


test_pattern.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def table(results: list[Result]) -> str:
    """The results as a fixed-width table, one check a line."""
    rows = [("PART", "CHECK", "RESULT", "DETAIL")]
    rows += [(r.part, r.check, str(r.outcome), r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        + "\n"
        for row in rows
    )


def report_text(results: list[Result], *, profile: str, worker: str | None, seconds: float) -> str:
    """The file a technician sends: which board, when, the table, the verdict."""
    failed = [r for r in results if r.outcome is Outcome.FAIL]
    verdict = f"FAIL ({len(failed)} of {len(results)} checks)" if failed else "PASS"
    return (
        f"dryad selftest: {verdict}\n"
        f"host: {platform.node()}\n"
        f"worker: {worker or '(no identity yet)'}\n"
        f"profile: {profile}\n"
        f"dryad: {__version__}\n"
        f"date: {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"duration: {seconds:.1f} s\n\n" + table(results)
    )


def report_path(state_dir: Path) -> Path:
    """Where the report goes unless told: the state directory, named by host and time."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return state_dir / f"selftest-{platform.node()}-{stamp}.txt"


def worker_uuid(state_dir: Path) -> str | None:
    """The board's UUID if it has one; a selftest never creates an identity."""
    try:
        return (state_dir / "uuid").read_text().strip() or None
    except OSError:
        return None


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Readable by whoever copies it off the board: it holds no secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


async def run_selftest(
    settings: Settings,
    board_settings: BoardSettings,
    *,
    button: bool = True,
    button_timeout: float = BUTTON_TIMEOUT,
    report: Path | None = None,
    say: Say = print,
    led_show: float = LED_SHOW,
) -> int:
    """Open the configured board, run every check, print the table, write the report.

    :returns: the exit status, 0 when no check failed, else 1.
    :raises HardwareError: the board cannot be opened (the dryad still running?).
    """
    started = time.monotonic()
    say(f"dryad selftest: profile {settings.profile}; stop the dryad service first")
    async with open_board(settings.profile, board_settings) as board:
        test = SelfTest(
            board, button=button, button_timeout=button_timeout, say=say, led_show=led_show
        )
        results = await test.run()
    seconds = time.monotonic() - started
    text = report_text(
        results, profile=settings.profile, worker=worker_uuid(settings.state_dir), seconds=seconds
    )
    path = report or report_path(settings.state_dir)
    say(table(results).rstrip("\n"))
    try:
        write_report(path, text)
        say(f"{text.splitlines()[0]} in {seconds:.1f} s; report: {path}")
    except OSError as exc:
        say(f"{text.splitlines()[0]} in {seconds:.1f} s; the report could not be written: {exc}")
    return 0 if test.passed else 1
