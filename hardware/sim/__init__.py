"""A MuxPi STM32 firmware simulator that speaks the real bytes on a pty."""

from __future__ import annotations

from hardware.sim.firmware import BoardState, Firmware
from hardware.sim.panel import Panel
from hardware.sim.pty import PtyStm

__all__ = ["BoardState", "Firmware", "Panel", "PtyStm"]
