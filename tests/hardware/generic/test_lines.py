"""gpiozero's errors on opening a line become BadConfig naming the configuration key."""

from __future__ import annotations

import pytest
from gpiozero import OutputDevice
from gpiozero.exc import BadPinFactory, PinError, PinInvalidPin
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadConfig
from hardware.generic.config import parse
from hardware.generic.lines import open_pin, pin_factory
from hardware.pins import NanoPiMockFactory


def test_the_mock_is_chosen_only_when_simulating() -> None:
    assert pin_factory(parse({"leds": [{"pin": 4}]})) is None  # gpiozero's default library
    mock = pin_factory(parse({"simulate": True, "leds": [{"pin": 4}]}))
    assert isinstance(mock, MockFactory) and not isinstance(mock, NanoPiMockFactory)
    mock.close()


def test_gpiochip_lines_get_a_table_of_exactly_those_lines() -> None:
    settings = parse(
        {
            "simulate": True,
            "power": {"type": "gpio", "pin": "gpiochip0:003"},
            "leds": [{"pin": "gpiochip1:6"}],
        }
    )
    assert settings.chip_lines() == {
        "gpiochip0:3": ("gpiochip0", 3),
        "gpiochip1:6": ("gpiochip1", 6),
    }
    mock = pin_factory(settings)
    assert isinstance(mock, NanoPiMockFactory)
    relay = OutputDevice("gpiochip0:3", pin_factory=mock)
    relay.on()
    assert mock.pin("gpiochip0:3").state is True
    with pytest.raises(PinInvalidPin):
        OutputDevice("gpiochip0:4", pin_factory=mock)  # not configured: not on the board
    relay.close()
    mock.close()


def test_a_board_names_its_pins_one_way() -> None:
    with pytest.raises(BadConfig, match=r"^generic\.sd\.pin: GPIO4 and generic\.power\.pin"):
        parse(
            {
                "power": {"type": "gpio", "pin": "gpiochip0:3"},
                "sd": {"type": "gpio", "pin": "GPIO4"},
            }
        )
    with pytest.raises(BadConfig, match="gpiochip0:3 is already used by generic.power.pin"):
        parse(
            {
                "power": {"type": "gpio", "pin": "gpiochip0:3"},
                "sd": {"type": "gpio", "pin": "gpiochip0:03"},
            }
        )


def test_a_line_used_twice_names_the_second_key(factory: MockFactory) -> None:
    first = OutputDevice("GPIO4", pin_factory=factory)
    with pytest.raises(BadConfig, match=r"^generic\.sd\.pin: 4 is already in use"):
        open_pin("generic.sd.pin", 4, lambda: OutputDevice(4, pin_factory=factory))
    first.close()


def raises(exc: Exception) -> OutputDevice:
    raise exc


@pytest.mark.parametrize(
    ("foreign", "message"),
    [
        (
            BadPinFactory("Unable to load any default pin factory!"),
            "no GPIO library can drive GPIO26 here",
        ),
        (PinError("edge detection not supported"), "GPIO26 cannot be used: edge detection"),
        (
            PermissionError(13, "Permission denied", "/dev/gpiochip0"),
            "GPIO26 cannot be used: .*Perm",
        ),
    ],
)
def test_foreign_errors_name_the_key(foreign: Exception, message: str) -> None:
    with pytest.raises(BadConfig, match=rf"^generic\.button\.pin: {message}") as caught:
        open_pin("generic.button.pin", "GPIO26", lambda: raises(foreign))
    assert caught.value.__cause__ is foreign
