"""Status parts: LEDs on GPIO lines (RGB and single) and the OLED through luma."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from hardware.display import LumaDisplay, render_text
from hardware.errors import BadArgument, BadConfig, DeviceNotFound
from hardware.generic.config import OledSettings, RgbLed, SingleLed
from hardware.generic.status import GpioLeds, lit, open_oled
from hardware.muxpi import OFF, YELLOW

pytestmark = pytest.mark.anyio

CYAN = (0, 96, 96)


@pytest.fixture
async def leds(factory: MockFactory) -> AsyncIterator[GpioLeds]:
    specs = (RgbLed("GPIO5", "GPIO6", "GPIO13"), SingleLed("GPIO19", "green"))
    async with GpioLeds(specs, factory) as value:
        yield value


def states(factory: MockFactory, *pins: int) -> tuple[bool, ...]:
    return tuple(factory.pin(p).state for p in pins)


async def wait_for(leds: GpioLeds, check: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not check():
            await leds.changed.wait()


def test_a_channel_is_lit_from_a_quarter_of_its_range() -> None:
    assert lit(YELLOW) == (True, True, False)
    assert lit((63, 64, 0)) == (False, True, False)


async def test_an_rgb_led_shows_the_hue_and_reads_back_the_colour_set(
    leds: GpioLeds, factory: MockFactory
) -> None:
    await leds.set_rgb(1, CYAN)
    assert states(factory, 5, 6, 13) == (False, True, True)
    assert leds.read(1) == CYAN


async def test_a_single_led_shows_its_own_channel(leds: GpioLeds, factory: MockFactory) -> None:
    await leds.set_rgb(2, YELLOW)  # has green
    assert factory.pin(19).state is True and leds.read(2) == YELLOW
    await leds.set_rgb(2, (128, 0, 0))  # red: not this LED's colour
    assert factory.pin(19).state is False and leds.read(2) == OFF


async def test_an_active_low_any_colour_led(factory: MockFactory) -> None:
    async with GpioLeds((SingleLed(4, "any", active_high=False),), factory) as leds:
        await leds.set_rgb(1, (0, 0, 128))
        assert factory.pin(4).state is False  # lit: the line is pulled low
        await leds.set_rgb(2, YELLOW)  # there is no LED 2: nothing happens
        assert leds.read(2) == OFF


async def test_maintenance_alternates_and_stop_darkens(
    leds: GpioLeds, factory: MockFactory
) -> None:
    await leds.maintenance(period=0.01)
    await wait_for(leds, lambda: factory.pin(19).state)  # LED 2's turn comes after LED 1's
    assert states(factory, 5, 6, 13) == (False, False, False)  # never both lit
    await leds.stop()
    assert states(factory, 5, 6, 13, 19) == (False,) * 4


async def test_identify_blinks_both_until_a_steady_colour(
    leds: GpioLeds, factory: MockFactory
) -> None:
    await leds.blink((255, 255, 255), on_time=0.01, off_time=0.01)
    await wait_for(leds, lambda: states(factory, 5, 19) == (True, True))
    await leds.set_rgb(1, (0, 128, 0))
    changed = leds.changed
    with anyio.move_on_after(0.05):  # a blink still running would change an LED by then
        await changed.wait()
    assert not changed.is_set() and states(factory, 5, 6, 13) == (False, True, False)


async def test_led_numbers_other_than_1_and_2_are_refused(leds: GpioLeds) -> None:
    with pytest.raises(BadArgument):
        await leds.set_rgb(3, YELLOW)
    with pytest.raises(BadArgument):
        leds.read(0)


async def test_a_wrong_led_pin_names_the_led_and_releases_the_others(factory: MockFactory) -> None:
    specs = (SingleLed("GPIO4"), RgbLed("GPIO5", "GPIO6", "GPIO99"))
    with pytest.raises(BadConfig, match=r"^generic\.leds\[2\]: .*GPIO99"):
        GpioLeds(specs, factory)
    GpioLeds((SingleLed("GPIO4"),), factory)  # free again: LED 1 was closed


async def test_patterns_need_the_context(factory: MockFactory) -> None:
    leds = GpioLeds((SingleLed(4),), factory)
    with pytest.raises(RuntimeError, match="async with"):
        await leds.maintenance()
    await leds.aclose()
    await leds.aclose()


async def test_a_tall_simulated_oled_shows_the_screen_in_its_top_rows() -> None:
    device = open_oled(OledSettings("sh1106", height=64), simulate=True)
    display = LumaDisplay(device)
    await display.show_text("IDLE", "ready")
    shown = device._device.image
    assert shown.size == (128, 64)
    assert shown.crop((0, 0, 128, 32)).tobytes() == render_text("IDLE", "ready").tobytes()
    await display.aclose()


def test_a_missing_i2c_bus_names_the_key_and_what_to_check() -> None:
    with pytest.raises(DeviceNotFound, match=r"^generic\.display\.i2c_port: ssd1306 on I2C bus 97"):
        open_oled(OledSettings("ssd1306", i2c_port=97), simulate=False)
