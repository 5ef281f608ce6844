"""The button: each press reaches every reader as the MuxPi's STM keys do."""

from __future__ import annotations

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadConfig
from hardware.generic.button import QUEUE, GpioButton
from hardware.generic.config import ButtonSettings

pytestmark = pytest.mark.anyio


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()  # pull_up: pressed connects the line to ground
    factory.pin(pin).drive_high()


async def test_a_press_reaches_each_reader_with_the_button_number(factory: MockFactory) -> None:
    button = GpioButton(ButtonSettings("GPIO26", bounce_time=0, number=2), factory)
    with button.presses() as first, button.presses() as second:
        press(factory, 26)
        with anyio.fail_after(5):
            assert (await first.receive(), await second.receive()) == (2, 2)
    await button.aclose()
    await button.aclose()


async def test_a_closed_reader_is_forgotten_and_a_full_one_drops(factory: MockFactory) -> None:
    button = GpioButton(ButtonSettings(26, bounce_time=0), factory)
    button.presses().close()
    with button.presses() as slow:
        for _ in range(QUEUE + 3):
            press(factory, 26)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            received = [await slow.receive() for _ in range(QUEUE)]
        assert received == [1] * QUEUE
        with pytest.raises(anyio.WouldBlock):
            slow.receive_nowait()
    await button.aclose()


async def test_held_reads_the_line(factory: MockFactory) -> None:
    button = GpioButton(ButtonSettings(26, pull_up=False, bounce_time=0), factory)
    factory.pin(26).drive_high()
    assert button.held
    await button.aclose()


async def test_a_wrong_button_pin_names_its_key(factory: MockFactory) -> None:
    with pytest.raises(BadConfig, match=r"^generic\.button\.pin: BOARD99"):
        GpioButton(ButtonSettings("BOARD99"), factory)
