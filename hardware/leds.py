"""Leds: the STM's two RGB LEDs with anyio-driven patterns, and the NanoPi's own LEDs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from gpiozero import LED, Factory

from hardware.interfaces import Stm
from hardware.muxpi import OFF, YELLOW
from hardware.stm.protocol import Rgb

logger = logging.getLogger(__name__)

Color = tuple[int, int, int]


class StmLeds:
    """RGB LEDs 1 (bottom-left) and 2 (right of the OLED) through the STM.

    Patterns run in this object's own task group; use ``async with StmLeds(...)``.
    Setting a colour or starting a pattern replaces the running pattern.

    :param status_factory: pin factory for the NanoPi's green and red LEDs
        (None: the board has none, ``set_status`` is a no-op).
    """

    def __init__(self, stm: Stm, status_factory: Factory | None = None) -> None:
        self._stm = stm
        self._tg: TaskGroup | None = None
        self._pattern: anyio.CancelScope | None = None
        self._green: LED | None = None
        self._red: LED | None = None
        if status_factory is not None:
            self._green = LED("STATUS_LED1", pin_factory=status_factory)
            self._red = LED("STATUS_LED2", pin_factory=status_factory)

    async def __aenter__(self) -> StmLeds:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
        if self._tg is not None:
            tg, self._tg = self._tg, None
            await tg.__aexit__(et, e, tb)

    async def aclose(self) -> None:
        """Stop patterns and release the status LEDs; the RGB LEDs keep their colour."""
        self._cancel()
        for led in (self._green, self._red):
            if led is not None:
                led.close()

    def _cancel(self) -> None:
        if self._pattern is not None:
            self._pattern.cancel()
            self._pattern = None

    async def set_rgb(self, number: int, color: Color) -> None:
        self._cancel()
        await self._stm.set_led(number, Rgb(*color))

    async def stop(self) -> None:
        self._cancel()
        await self._stm.set_led(1, Rgb(*OFF))
        await self._stm.set_led(2, Rgb(*OFF))

    async def maintenance(self, period: float = 1.0) -> None:
        """Boruta's maintenance pattern: LED1 yellow for *period*, then LED2, repeating."""

        async def step() -> None:
            # Dark first, then lit: never both yellow, even between two commands.
            await self._stm.set_led(2, Rgb(*OFF))
            await self._stm.set_led(1, Rgb(*YELLOW))
            await anyio.sleep(period)
            await self._stm.set_led(1, Rgb(*OFF))
            await self._stm.set_led(2, Rgb(*YELLOW))
            await anyio.sleep(period)

        await self._start(step)

    async def blink(self, color: Color, *, on_time: float = 0.5, off_time: float = 0.5) -> None:
        """Both LEDs together in *color*, then dark (the identify blink)."""
        lit, dark = Rgb(*color), Rgb(*OFF)

        async def step() -> None:
            for rgb, pause in ((lit, on_time), (dark, off_time)):
                await self._stm.set_led(1, rgb)
                await self._stm.set_led(2, rgb)
                await anyio.sleep(pause)

        await self._start(step)

    async def _start(self, step: Callable[[], Awaitable[None]]) -> None:
        if self._tg is None:
            raise RuntimeError("StmLeds patterns need 'async with StmLeds(...)'")
        self._cancel()
        scope = anyio.CancelScope()
        self._pattern = scope

        async def run() -> None:
            with scope:
                while True:
                    try:
                        await step()
                    except Exception:
                        # A pattern is decoration: log, wait, and keep the dryad running.
                        logger.exception("LED pattern step failed")
                        await anyio.sleep(1.0)

        self._tg.start_soon(run)

    def set_status(self, *, green: bool, red: bool) -> None:
        for led, on in ((self._green, green), (self._red, red)):
            if led is not None:
                led.value = on
