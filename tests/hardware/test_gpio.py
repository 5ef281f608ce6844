"""Gpio and pins: muxpi-power sequences on a mocked NanoPi board table."""

from __future__ import annotations

import pytest

from hardware.errors import BadArgument
from hardware.gpio import NanoPiGpio
from hardware.pins import Line, NanoPiMockFactory, PinMap

pytestmark = pytest.mark.anyio


@pytest.fixture
def factory() -> NanoPiMockFactory:
    return NanoPiMockFactory()


async def test_power_on_cycles_the_board_with_boot0_low(factory: NanoPiMockFactory) -> None:
    gpio = NanoPiGpio(factory, settle=0)
    await gpio.power_on()
    factory.pin("PWR_CTRL").assert_states([False, True])
    assert (gpio.powered, gpio.bootloader) == (True, False)


async def test_flashing_raises_boot0_before_power_returns(factory: NanoPiMockFactory) -> None:
    gpio = NanoPiGpio(factory, settle=0)
    await gpio.flashing()
    assert (
        factory.pin("STM_BOOT0").states[-1].timestamp < factory.pin("PWR_CTRL").states[-1].timestamp
    )
    assert (gpio.powered, gpio.bootloader) == (True, True)
    await gpio.power_off()
    assert (gpio.powered, gpio.bootloader) == (False, False)
    await gpio.aclose()


def test_lines_answer_to_label_chip_offset_and_header_pin(factory: NanoPiMockFactory) -> None:
    assert factory.pin("STM_BOOT0") is factory.pin("gpiochip0:203") is factory.pin("J1:7")


def test_lines_are_configurable_and_may_not_collide() -> None:
    moved = PinMap({**PinMap().lines, "STM_BOOT0": Line("gpiochip1", 11)})
    assert NanoPiMockFactory(moved).pin("gpiochip1:11") is not None
    with pytest.raises(BadArgument, match="one line twice"):
        PinMap({"A": Line("gpiochip0", 3), "B": Line("gpiochip0", 3)})
