"""gpiozero's errors on opening a line become BadConfig naming the configuration key."""

from __future__ import annotations

import pytest
from gpiozero import OutputDevice
from gpiozero.exc import BadPinFactory, PinError
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadConfig
from hardware.generic.lines import open_pin, pin_factory


def test_the_mock_is_chosen_only_when_simulating() -> None:
    assert pin_factory(simulate=False) is None  # gpiozero picks the real library
    mock = pin_factory(simulate=True)
    assert isinstance(mock, MockFactory)
    mock.close()


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
        (BadPinFactory("Unable to load any default pin factory!"), "no GPIO library can drive GPIO26 here"),
        (PinError("edge detection not supported"), "GPIO26 cannot be used: edge detection"),
        (PermissionError(13, "Permission denied", "/dev/gpiochip0"), "GPIO26 cannot be used: .*Perm"),
    ],
)
def test_foreign_errors_name_the_key(foreign: Exception, message: str) -> None:
    with pytest.raises(BadConfig, match=rf"^generic\.button\.pin: {message}") as caught:
        open_pin("generic.button.pin", "GPIO26", lambda: raises(foreign))
    assert caught.value.__cause__ is foreign
