"""gpiozero for the generic board: the pin factory, and devices opened with named errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hardware.errors import BadConfig
from hardware.generic.config import Pin

D = TypeVar("D")


def pin_factory(simulate: bool) -> Any:
    """gpiozero's MockFactory when simulating, else None (gpiozero picks lgpio, gpiod, …).

    The mock is chosen only by ``generic.simulate``, never because no real library works.
    """
    if not simulate:
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
