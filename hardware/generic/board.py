"""Open a generic board's fitted parts, all or none, and say what was found."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from hardware.errors import BadConfig
from hardware.generic.config import (
    CommandPowerSettings,
    GenericSettings,
    GpioSdSettings,
)
from hardware.generic.lines import pin_factory
from hardware.generic.power import CommandPower, GpioPower, Power
from hardware.generic.sdmux import GpioSdSwitch, SdSwitch, UsbSdMuxSwitch
from hardware.generic.status import GpioLeds, open_oled
from hardware.generic.stm import GenericStm
from hardware.interfaces import Display

logger = logging.getLogger(__name__)


async def open_parts(
    settings: GenericSettings,
    stack: AsyncExitStack,
    *,
    png: Path | None = None,
    factory: Any = None,
) -> tuple[GenericStm, Display, GpioLeds | None, Any]:
    """Open every configured part; a part that fails closes those opened before it.

    :param factory: a gpiozero pin factory to use (tests); None: the board's own.
    :returns: the ``Stm``, the ``Display``, the ``Leds`` (None without LEDs) and the
        mock pin factory (None unless simulating), for tests to drive the pins.
    :raises BadConfig, DeviceNotFound, DevicePermission, CommandFailed: naming the key.
    """
    from hardware.display import LumaDisplay

    button_pin = settings.button.pin if settings.button is not None else None
    if not settings.simulate and str(button_pin) in settings.chip_lines():
        raise BadConfig(
            "generic.button.pin",
            f"{button_pin}: the dryad drives gpiochip lines as outputs only; "
            "wire the button to a pin gpiozero names (e.g. GPIO26 on a Raspberry Pi)",
        )
    if factory is None and settings.uses_gpio:
        factory = pin_factory(settings)
        if factory is not None:
            stack.callback(factory.close)
    power = await _power(settings, factory, stack)
    sd = await _sd(settings, factory, stack)
    leds: GpioLeds | None = None
    if settings.leds:
        leds = await stack.enter_async_context(GpioLeds(settings.leds, factory))
    button = None
    if settings.button is not None:
        from hardware.generic.button import GpioButton

        button = GpioButton(settings.button, factory)
        stack.push_async_callback(button.aclose)
    oled = settings.display
    # Without an OLED the screen is still drawn off-screen: the dashboard mirrors it.
    device = open_oled(oled, simulate=settings.simulate) if oled is not None else None
    if device is None:
        from luma.core.device import dummy

        device = dummy(width=128, height=32, mode="1")
    display = LumaDisplay(device, png=png)
    stack.push_async_callback(display.aclose)
    stm = GenericStm(power, sd, leds, button)
    logger.info("generic board: %s", describe(settings, power, sd, leds, button))
    for missing, key, effect in (
        (power is None, "generic.power", "stm -tick is refused; -dut/-ts only move the card"),
        (sd is None, "generic.sd", "stm -dut/-ts and fota -dut are refused"),
    ):
        if missing:
            logger.warning("generic board: nothing at %s: %s", key, effect)
    return stm, display, leds, factory


async def _power(settings: GenericSettings, factory: Any, stack: AsyncExitStack) -> Power | None:
    spec = settings.power
    if spec is None:
        return None
    power: Power
    if isinstance(spec, CommandPowerSettings):
        power = CommandPower(spec)
    else:
        power = GpioPower(spec, factory)
    stack.push_async_callback(power.aclose)
    await power.off()  # a known state, and a command that fails stops the dryad here
    return power


async def _sd(settings: GenericSettings, factory: Any, stack: AsyncExitStack) -> SdSwitch | None:
    spec = settings.sd
    if spec is None:
        return None
    sd: SdSwitch
    if isinstance(spec, GpioSdSettings):
        sd = GpioSdSwitch(spec, factory)
    else:
        sd = await UsbSdMuxSwitch.open(spec, simulate=settings.simulate)
    stack.push_async_callback(sd.aclose)
    return sd


def describe(
    settings: GenericSettings,
    power: Power | None,
    sd: SdSwitch | None,
    leds: GpioLeds | None,
    button: Any,
) -> str:
    """One line naming what is fitted, for the start log."""
    oled = settings.display
    parts = [
        f"power {power or 'none'}",
        f"SD card {sd or 'none'}",
        f"LEDs {leds.describe() if leds else 'none'}",
        (
            f"display {oled.kind} 128x{oled.height} on I2C bus {oled.i2c_port} "
            f"at {oled.i2c_address:#04x}"
            if oled
            else "display none"
        ),
        f"{button or 'button none'}",
    ]
    return "; ".join(parts) + ("; simulated" if settings.simulate else "")
