"""The STM32 console of the MuxPi: its text protocol and an async serial client."""

from __future__ import annotations

from hardware.stm.client import SerialStm
from hardware.stm.protocol import Color, Lthor, Mux, Rgb
from hardware.stm.sampling import CurrentRecorder

__all__ = ["Color", "CurrentRecorder", "Lthor", "Mux", "Rgb", "SerialStm"]
