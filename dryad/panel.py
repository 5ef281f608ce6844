"""The board's physical status: what the OLED and the two RGB LEDs say for each state."""

from __future__ import annotations

import base64
import io
import logging
import math
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from anyio.abc import TaskGroup, TaskStatus

from coordinator import wire
from dryad.states import WorkerState
from hardware import Display, HardwareError, Leds

logger = logging.getLogger(__name__)

WIDTH = 16  # characters per OLED line (128 px / 8 px glyphs)

Rgb = tuple[int, int, int]
OFF: Rgb = (0, 0, 0)
GREEN: Rgb = (0, 128, 0)
BLUE: Rgb = (0, 0, 128)
CYAN: Rgb = (0, 96, 96)
YELLOW: Rgb = (96, 144, 0)  # the original dryad's maintenance yellow
RED: Rgb = (128, 0, 0)
PURPLE: Rgb = (96, 0, 128)
PINK: Rgb = (128, 16, 32)
WHITE: Rgb = (255, 255, 255)

STEADY: dict[WorkerState, tuple[Rgb, Rgb]] = {
    WorkerState.IDLE: (GREEN, GREEN),
    WorkerState.RUNNING: (BLUE, BLUE),
    WorkerState.PREPARE: (CYAN, CYAN),
    WorkerState.BUSY: (YELLOW, YELLOW),
    WorkerState.FAILED: (RED, RED),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def fit(text: str, width: int = WIDTH) -> str:
    """One OLED line: printable ASCII, single-spaced, cut with '~' when too long."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in " ".join(text.split()))
    return clean if len(clean) <= width else clean[: width - 1] + "~"


def wrap(text: str, lines: int = 2) -> list[str]:
    """*text* over at most *lines* lines, the last one cut when it does not fit."""
    words = textwrap.wrap(fit(text, 10_000), WIDTH, break_long_words=True) or [""]
    if len(words) > lines:
        rest = " ".join(words[lines - 1 :])
        words = [*words[: lines - 1], fit(rest)]
    return words


def time_left(until: str, now: datetime) -> str:
    """'47 min left', '2 h 05 min left' or 'time is up' for an RFC 3339 *until*."""
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        return fit(f"until {until}") if until else "no time limit"
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    seconds = (end - now).total_seconds()
    if seconds <= 0:
        return "time is up"
    # Rounded up: a job with 30 s left still has "1 min", never "0 min".
    minutes = math.ceil(seconds / 60)
    if minutes < 100:
        return f"{minutes} min left"
    return f"{minutes // 60} h {minutes % 60:02d} min left"


@dataclass(frozen=True)
class Screen:
    """What one state looks like: two OLED lines and the LED pattern."""

    lines: tuple[str, ...]
    leds: tuple[Rgb, Rgb] | None = None  # steady colours of LED 1 and LED 2
    pattern: str = ""  # "maintenance" or "identify": a blink owned by Panel.run


def screen_for(view: wire.Display, now: datetime) -> Screen:
    """The screen of a worker state (see :class:`Panel` for the table)."""
    state = view.state
    match state:
        case WorkerState.IDLE:
            return Screen(("IDLE", "ready for a job"), STEADY[state])
        case WorkerState.RUNNING:
            owner = fit(view.owner or "RUNNING")
            return Screen((owner, time_left(view.until, now)), STEADY[state])
        case WorkerState.PREPARE:
            return Screen(("PREPARE", "new job user"), STEADY[state])
        case WorkerState.BUSY:
            return Screen(("BUSY", "to maintenance"), STEADY[state])
        case WorkerState.MAINTENANCE:
            message = wrap(view.maintenance.message)
            if len(message) == 1 and message[0].lower() != "maintenance":
                message = ["MAINTENANCE", *message]
            return Screen(tuple(message), pattern="maintenance")
        case WorkerState.FAILED:
            return Screen(("FAILED", fit(view.reason or "no reason given")), STEADY[state])
    # Only a Display made here can hold another state: the wire accepts none.
    return Screen((fit(state or "?"), "unknown state"), (PINK, PINK))


class Panel:
    """Shows the worker's state on the OLED and the two RGB LEDs of the MuxPi.

    ======================  ==============================  ===========================
    state                   OLED (two 16-character lines)   LED 1 / LED 2
    ======================  ==============================  ===========================
    IDLE                    IDLE / ready for a job          green (0,128,0), steady
    RUNNING                 owner / 47 min left             blue (0,0,128), steady
    PREPARE                 PREPARE / new job user          cyan (0,96,96), steady
    BUSY                    BUSY / to maintenance           yellow (96,144,0), steady
    MAINTENANCE             the coordinator's message       yellow (96,144,0): LED 1 for
                                                            one period, then LED 2
    FAILED                  FAILED / the reason, cut        red (128,0,0), steady
    disconnected            NO COORDINATOR / its address    purple (96,0,128), steady
    enrolment refused       ENROL REFUSED / its address     LED 1 red, LED 2 purple
    identify (N seconds)    >> IDENTIFY << / N s            white (255,255,255) blink on
                                                            both, then the state again
    unknown state           the state / unknown state       pink (128,16,32), steady
    ======================  ==============================  ===========================

    Blinks run in :meth:`run`'s task group; each new screen stops the old blink and
    waits for it to end before setting the LEDs, so no blink outlives its screen.

    After every change of the OLED or the LEDs the callbacks given to :meth:`watch` are
    called (synchronously; they must not block); :meth:`report` says what is shown now.

    :param period: seconds each LED stays lit in the maintenance blink (original: 1 s).
    :param flash: seconds on and off of the identify blink.
    :param refresh: seconds between redraws of the RUNNING screen's time left.
    """

    def __init__(
        self,
        display: Display,
        leds: Leds | None,
        clock: Callable[[], datetime] = utc_now,
        *,
        period: float = 1.0,
        flash: float = 0.25,
        refresh: float = 60.0,
    ) -> None:
        self._display = display
        self._leds = leds
        self._clock = clock
        self._period = period
        self._flash = flash
        self._refresh = refresh
        self._view: wire.Display | None = None
        self._base: Screen | None = None  # the state's screen, shown again after identify
        self._identify: Screen | None = None
        self._identify_scope: anyio.CancelScope | None = None
        self._blink: tuple[anyio.CancelScope, anyio.Event] | None = None
        self._tg: TaskGroup | None = None
        self._lock = anyio.Lock()
        self._closed = False
        self._colors: list[Rgb] = [OFF, OFF]  # what LED 1 and LED 2 were last set to
        self._watchers: list[Callable[[], None]] = []

    @property
    def screen(self) -> Screen | None:
        """What the panel shows now (identify while it lasts)."""
        return self._identify or self._base

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change the panel draws (screen or LEDs)."""
        self._watchers.append(callback)

    def report(self) -> wire.Panel:
        """What the board shows now: the OLED frame as a base64 PNG and both LED colours."""
        png = io.BytesIO()
        self._display.image.save(png, format="PNG")
        screen = base64.b64encode(png.getvalue()).decode()
        return wire.Panel(screen, (self._colors[0], self._colors[1]))

    def _changed(self) -> None:
        for callback in self._watchers:
            try:
                callback()
            except Exception:  # a mirror's trouble must never stop the board's own panel
                logger.exception("panel watcher failed")

    def _record(self, *colors: tuple[int, Rgb]) -> None:
        for number, color in colors:
            self._colors[number - 1] = color
        self._changed()

    async def show(self, view: wire.Display) -> None:
        """Show the screen of a worker state, replacing whatever was shown."""
        self._view = view
        await self._set_base(screen_for(view, self._clock()))

    async def disconnected(self, coordinator: str) -> None:
        """The link to *coordinator* is down; the dryad keeps trying."""
        self._view = None
        await self._set_base(Screen(("NO COORDINATOR", fit(coordinator)), (PURPLE, PURPLE)))

    async def refused(self, coordinator: str) -> None:
        """*coordinator* refused our enrolment (bad or expired token, or another key)."""
        self._view = None
        await self._set_base(Screen(("ENROL REFUSED", fit(coordinator)), (RED, PURPLE)))

    async def identify(self, seconds: float) -> None:
        """Blink both LEDs brightly for *seconds* (needs :meth:`run`), then show the state."""
        if self._tg is None:
            raise RuntimeError("Panel.identify needs Panel.run to be running")
        if self._identify_scope is not None:
            self._identify_scope.cancel()  # a second identify restarts the count
        scope = anyio.CancelScope()
        self._identify_scope = scope
        self._identify = Screen((">> IDENTIFY <<", f"{seconds:g} s"), pattern="identify")
        await self._draw()
        self._tg.start_soon(self._end_identify, scope, seconds)

    async def _end_identify(self, scope: anyio.CancelScope, seconds: float) -> None:
        with scope:
            await anyio.sleep(seconds)
        # Only the sleep is cancellable: a redraw cut short would leave a half-sent frame.
        if self._identify_scope is not scope:
            return  # restarted by a later identify, or closed
        self._identify = None
        self._identify_scope = None
        await self._draw()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the blink tasks and redraw the RUNNING screen's time left every minute."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                if self.screen is not None and self.screen.pattern:
                    await self._draw()  # a blink asked for before run started
                task_status.started()
                while True:
                    await anyio.sleep(self._refresh)
                    if self._view is not None and self._view.state is WorkerState.RUNNING:
                        try:
                            with anyio.CancelScope(shield=True):  # see _set
                                await self.show(self._view)
                        except HardwareError:
                            logger.warning("could not redraw the time left", exc_info=True)
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Stop every blink, darken the LEDs and say the dryad has stopped."""
        if self._closed:
            return
        self._closed = True
        if self._identify_scope is not None:
            self._identify_scope.cancel()
            self._identify_scope = None
        with anyio.CancelScope(shield=True):
            await self._stop_blink()
            try:
                if self._leds is not None:
                    await self._leds.stop()
                    self._colors = [OFF, OFF]
                await self._display.show_text("dryad stopped")
                self._changed()
            except HardwareError:
                logger.warning("could not show the stopped screen", exc_info=True)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _set_base(self, screen: Screen) -> None:
        self._base = screen
        if self._identify is None:
            await self._draw()

    async def _draw(self) -> None:
        async with self._lock:
            screen = self.screen
            if screen is None or self._closed:
                return
            await self._display.show_text(*screen.lines)
            await self._stop_blink()
            if self._leds is None:
                self._changed()
                return
            if screen.leds is not None:
                for number, color in enumerate(screen.leds, start=1):
                    await self._leds.set_rgb(number, color)
                self._record((1, screen.leds[0]), (2, screen.leds[1]))
            elif self._tg is not None:
                step = (
                    self._maintenance_step if screen.pattern == "maintenance" else self._flash_step
                )
                scope, done = anyio.CancelScope(), anyio.Event()
                self._blink = (scope, done)
                self._tg.start_soon(self._blinking, self._leds, step, scope, done)
                self._changed()  # the new screen now; the blink reports its own steps
            else:
                # Without run() there is no task to blink: dark until run starts it.
                await self._leds.stop()
                self._record((1, OFF), (2, OFF))

    async def _stop_blink(self) -> None:
        if self._blink is not None:
            scope, done = self._blink
            self._blink = None
            scope.cancel()
            await done.wait()

    async def _blinking(
        self,
        leds: Leds,
        step: Callable[[Leds], Awaitable[None]],
        scope: anyio.CancelScope,
        done: anyio.Event,
    ) -> None:
        try:
            with scope:
                while True:
                    try:
                        await step(leds)
                    except HardwareError:
                        # A blink is decoration: log, wait, keep the dryad running.
                        logger.warning("LED blink step failed", exc_info=True)
                        await anyio.sleep(self._period)
        finally:
            done.set()

    async def _maintenance_step(self, leds: Leds) -> None:
        # The original's cycle: LED1 yellow one period, then LED2; never both lit.
        await self._set(leds, (2, OFF), (1, YELLOW))
        await anyio.sleep(self._period)
        await self._set(leds, (1, OFF), (2, YELLOW))
        await anyio.sleep(self._period)

    async def _flash_step(self, leds: Leds) -> None:
        for color in (WHITE, OFF):
            await self._set(leds, (1, color), (2, color))
            await anyio.sleep(self._flash)

    async def _set(self, leds: Leds, *colors: tuple[int, Rgb]) -> None:
        await _set(leds, *colors)
        self._record(*colors)


async def _set(leds: Leds, *colors: tuple[int, Rgb]) -> None:
    # Shielded: a blink is stopped only while it sleeps. An STM command cancelled after
    # it was written leaves its reply on the line, where the next command would take it
    # as its own and return before the STM has run it.
    with anyio.CancelScope(shield=True):
        for number, color in colors:
            await leds.set_rgb(number, color)
