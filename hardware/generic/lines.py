"""gpiozero for the generic board: the pin factory, and devices opened with named errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hardware.errors import BadConfig
from hardware.generic.config import GenericSettings, Pin

D = TypeVar("D")


def pin_factory(settings: GenericSettings) -> Any:
    """The gpiozero pin factory for the board's pins (docs/generic-board.md §pins).

    Pins named ``gpiochipN:OFFSET`` get a factory with exactly those lines (gpiod on the
    board, a mock of the same table when simulating); gpiozero's names get gpiozero's
    default factory (None), or its MockFactory when simulating. The mock is chosen only
    by ``generic.simulate``, never because no real library works.
    """
    lines = settings.chip_lines()
    if lines:
        from hardware.pins import GpiodFactory, Line, NanoPiMockFactory, PinMap

        pin_map = PinMap({name: Line(chip, offset) for name, (chip, offset) in lines.items()})
        if settings.simulate:
            return NanoPiMockFactory(pin_map)
        return GpiodFactory(pin_map)  # pragma: no cover - needs /dev/gpiochip*
    if not settings.simulate:
        return None
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


def open_pin(key: str, pin: Pin, make: Callable[[], D]) -> D:
    """``make()`` a gpiozero device; its errors become BadConfig naming *key*."""
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinError, PinInvalidPin

    try:
        return make()
    except PinInvalidPin as exc:
        raise BadConfig(key, f"{pin} does not exist on this board ({exc})") from exc
    except GPIOPinInUse as exc:
        raise BadConfig(key, f"{pin} is already in use ({exc})") from exc
    except BadPinFactory as exc:
        raise BadConfig(
            key, f"no GPIO library can drive {pin} here ({exc}); install lgpio or gpiod"
        ) from exc
    except (PinError, OSError) as exc:
        raise BadConfig(key, f"{pin} cannot be used: {exc}") from exc
