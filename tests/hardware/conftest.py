"""Fixtures for the hardware tests: a simulated STM on a pty and clients of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hardware import BoardSettings, Stm, open_board
from hardware.generic.config import parse as parse_generic
from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm

# Set to a device (e.g. /dev/ttyS2) to run tests/hardware/test_contract.py on a real MuxPi.
REAL_PORT_ENV = "BORUTA_STM_PORT"


@pytest.fixture
def firmware() -> Firmware:
    model = Firmware()
    model.state.dut_current_ma = 250
    return model


@pytest.fixture
async def sim(firmware: Firmware, tmp_path: Path) -> AsyncIterator[PtyStm]:
    async with PtyStm(firmware, link=tmp_path / "ttySTM", state_file=tmp_path / "state.json") as s:
        yield s


@pytest.fixture
async def stm(sim: PtyStm) -> AsyncIterator[SerialStm]:
    async with SerialStm(sim.path, timeout=0.5) as client:
        yield client


@asynccontextmanager
async def _muxpi_stm() -> AsyncIterator[SerialStm]:
    port = os.environ.get(REAL_PORT_ENV)
    if port:
        async with SerialStm(port, timeout=1.0) as client:
            yield client
        return
    async with PtyStm() as sim, SerialStm(sim.path, timeout=0.5) as client:
        yield client


@pytest.fixture
async def contract_stm() -> AsyncIterator[SerialStm]:
    """The real board when $BORUTA_STM_PORT names its port, else the simulator."""
    async with _muxpi_stm() as client:
        yield client


def _generic_boards(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Simulated generic boards, one per backend of each part."""
    log = str(tmp_path / "power.log")
    return {
        "generic-gpio": {
            "power": {"type": "gpio", "pin": "GPIO17", "active_high": False, "off_time": 0.01},
            "sd": {"type": "gpio", "pin": "GPIO27"},
            "leds": [{"red": "GPIO5", "green": "GPIO6", "blue": "GPIO13"}],
        },
        "generic-commands": {
            "power": {
                "type": "command",
                "on": ["sh", "-c", 'echo on >> "$0"', log],
                "off": ["sh", "-c", 'echo off >> "$0"', log],
                "off_time": 0.01,
            },
            "sd": {"type": "usbsdmux", "device": str(tmp_path / "usb-sd-mux")},
            "leds": [{"pin": "GPIO19"}, {"red": "GPIO5", "green": "GPIO6", "blue": "GPIO13"}],
        },
    }


@pytest.fixture(params=["muxpi", "generic-gpio", "generic-commands"])
async def any_stm(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stm]:
    """Every Stm the dryad may be given: the MuxPi's (real or simulated), and generic ones."""
    if request.param == "muxpi":
        async with _muxpi_stm() as client:
            yield client
        return
    table = {"simulate": True, **_generic_boards(tmp_path)[request.param]}
    async with open_board("generic", BoardSettings(generic=parse_generic(table))) as board:
        assert board.stm is not None
        yield board.stm
