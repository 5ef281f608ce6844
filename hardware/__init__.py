"""The MuxPi hardware behind small interfaces, with simulators."""

from __future__ import annotations

from hardware.errors import HardwareError
from hardware.interfaces import Display, Gpio, Leds, Stm
from hardware.profiles import PROFILES, Board, BoardSettings, open_board

__all__ = [
    "PROFILES",
    "Board",
    "BoardSettings",
    "Display",
    "Gpio",
    "HardwareError",
    "Leds",
    "Stm",
    "open_board",
]
