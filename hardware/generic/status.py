"""The status parts of a generic board: LEDs on GPIO lines and an I2C OLED through luma.

LEDs are switched, not dimmed (no software PWM on a small board): a channel is lit
when the wanted colour's value for it is at least :data:`LIT`, so the panel's colours
keep their hue (docs/generic-board.md §status).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup
from PIL import Image

from hardware.errors import BadArgument, DeviceNotFound, DevicePermission
from hardware.generic.config import OledSettings, RgbLed, SingleLed
from hardware.generic.lines import open_pin
from hardware.muxpi import OFF, OLED_HEIGHT, OLED_WIDTH, YELLOW

logger = logging.getLogger(__name__)

LIT: Final = 64  # of 255: the panel's dimmest channel in use is 96
Color = tuple[int, int, int]
_CHANNEL: Final = {"red": 0, "green": 1, "blue": 2}


def lit(color: Color) -> tuple[bool, bool, bool]:
    """Which of red, green and blue are lit for *color*."""
    r, g, b = (value >= LIT for value in color)
    return r, g, b


class _Led:
    """LED 1 or 2: an RGB LED on three lines, or one plain LED on one line."""

    def __init__(self, spec: RgbLed | SingleLed, factory: Any, key: str) -> None:
        from gpiozero import LED, RGBLED

        self.spec = spec
        self.color: Color = OFF
        self._device: Any
        if isinstance(spec, RgbLed):
            pins = (spec.red, spec.green, spec.blue)
            self._device = open_pin(
                key,
                "/".join(map(str, pins)),
                lambda: RGBLED(*pins, active_high=spec.active_high, pwm=False, pin_factory=factory),
            )
        else:
            self._device = open_pin(
                f"{key}.pin",
                spec.pin,
                lambda: LED(spec.pin, active_high=spec.active_high, pin_factory=factory),
            )

    def set(self, color: Color) -> None:
        self.color = color
        channels = lit(color)
        if isinstance(self.spec, RgbLed):
            self._device.value = tuple(int(c) for c in channels)
        elif self.spec.color == "any":
            self._device.value = any(channels)
        else:
            self._device.value = channels[_CHANNEL[self.spec.color]]

    def read(self) -> Color:
        """The colour shown, as the lines are now (what was set, rounded to lit channels)."""
        if isinstance(self.spec, RgbLed):
            lines = tuple(bool(v) for v in self._device.value)
            if lines == lit(self.color):
                return self.color
            r, g, b = (255 if on else 0 for on in lines)
            return r, g, b
        return self.color if self._device.value else OFF

    def close(self) -> None:
        self._device.close()

    def __str__(self) -> str:
        if isinstance(self.spec, RgbLed):
            return "RGB"
        return f"single {self.spec.color}" if self.spec.color != "any" else "single"


class GpioLeds:
    """The ``Leds`` interface on one or two GPIO LEDs; a missing LED 2 is skipped.

    Patterns run in this object's own task group; use ``async with GpioLeds(...)``.
    """

    def __init__(self, specs: tuple[RgbLed | SingleLed, ...], factory: Any) -> None:
        self._leds: list[_Led] = []
        try:
            for number, spec in enumerate(specs, start=1):
                self._leds.append(_Led(spec, factory, f"generic.leds[{number}]"))
        except BaseException:
            self._close_lines()
            raise
        self._tg: TaskGroup | None = None
        self._pattern: anyio.CancelScope | None = None
        self._changed: anyio.Event | None = None

    async def __aenter__(self) -> GpioLeds:
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

    def __len__(self) -> int:
        return len(self._leds)

    def describe(self) -> str:
        return ", ".join(str(led) for led in self._leds)

    @property
    def changed(self) -> anyio.Event:
        """Set at the next change of an LED (for tests and mirrors: wait, don't poll)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def _set(self, number: int, color: Color) -> None:
        if not 1 <= number <= 2:
            raise BadArgument(f"LED number must be 1 or 2, got {number}")
        if number <= len(self._leds):
            self._leds[number - 1].set(color)
            if self._changed is not None:
                self._changed.set()
                self._changed = None

    def read(self, number: int) -> Color:
        """LED *number*'s colour; a board without that LED has it dark."""
        if not 1 <= number <= 2:
            raise BadArgument(f"LED number must be 1 or 2, got {number}")
        return self._leds[number - 1].read() if number <= len(self._leds) else OFF

    def _cancel(self) -> None:
        if self._pattern is not None:
            self._pattern.cancel()
            self._pattern = None

    async def set_rgb(self, number: int, color: Color) -> None:
        self._cancel()
        self._set(number, color)

    async def stop(self) -> None:
        self._cancel()
        self._set(1, OFF)
        self._set(2, OFF)

    async def maintenance(self, period: float = 1.0) -> None:
        """LED 1 yellow, then LED 2 (with one LED: a yellow blink)."""

        async def step() -> None:
            self._set(2, OFF)
            self._set(1, YELLOW)
            await anyio.sleep(period)
            self._set(1, OFF)
            self._set(2, YELLOW)
            await anyio.sleep(period)

        await self._start(step)

    async def blink(self, color: Color, *, on_time: float = 0.5, off_time: float = 0.5) -> None:
        async def step() -> None:
            for shown, pause in ((color, on_time), (OFF, off_time)):
                self._set(1, shown)
                self._set(2, shown)
                await anyio.sleep(pause)

        await self._start(step)

    async def _start(self, step: Callable[[], Awaitable[None]]) -> None:
        if self._tg is None:
            raise RuntimeError("GpioLeds patterns need 'async with GpioLeds(...)'")
        self._cancel()
        scope = anyio.CancelScope()
        self._pattern = scope

        async def run() -> None:
            with scope:
                while True:
                    await step()

        self._tg.start_soon(run)

    def set_status(self, *, green: bool, red: bool) -> None:
        """A generic board has no separate status LEDs; nothing to do."""

    def _close_lines(self) -> None:
        for led in self._leds:
            led.close()

    async def aclose(self) -> None:
        """Stop patterns and release the lines (idempotent)."""
        self._cancel()
        self._close_lines()


class _Framed:
    """A luma device taller than the 128x32 screen: the screen is drawn in its top rows."""

    def __init__(self, device: Any) -> None:
        self._device = device
        self.mode = device.mode

    def display(self, image: Image.Image) -> None:
        frame = Image.new(self.mode, self._device.size)
        frame.paste(image, (0, 0))
        self._device.display(frame)

    def cleanup(self) -> None:
        self._device.cleanup()


def open_oled(settings: OledSettings, *, simulate: bool) -> Any:
    """The luma device of *settings*: the real panel on I2C, or luma's dummy when simulating.

    :raises DeviceNotFound, DevicePermission: naming ``generic.display`` and what to check.
    """
    key = "generic.display"
    size = {"width": OLED_WIDTH, "height": settings.height}
    if simulate:
        from luma.core.device import dummy

        device: Any = dummy(mode="1", **size)
    else:
        device = _i2c_oled(settings, size, key)
    return _Framed(device) if settings.height != OLED_HEIGHT else device


def _i2c_oled(settings: OledSettings, size: dict[str, int], key: str) -> Any:
    from luma.core.error import DeviceNotFoundError, DevicePermissionError
    from luma.core.interface.serial import i2c
    from luma.oled.device import sh1106, ssd1306

    where = f"{settings.kind} on I2C bus {settings.i2c_port} address {settings.i2c_address:#04x}"
    model = ssd1306 if settings.kind == "ssd1306" else sh1106
    try:
        bus = i2c(port=settings.i2c_port, address=settings.i2c_address)
    except DeviceNotFoundError as exc:
        raise DeviceNotFound(
            f"{key}.i2c_port: {where}: no such bus ({exc}); enable I2C in the device tree"
        ) from exc
    except DevicePermissionError as exc:
        raise DevicePermission(
            f"{key}.i2c_port: {where}: not accessible ({exc}); add the user to group i2c"
        ) from exc
    try:  # pragma: no cover - needs a real I2C bus: the first write finds a missing panel
        return model(bus, **size)
    except (DeviceNotFoundError, OSError) as exc:  # pragma: no cover
        raise DeviceNotFound(
            f"{key}.i2c_address: {where}: nothing answers ({exc}); check the wiring "
            "and the address (i2cdetect)"
        ) from exc
