"""Fixtures for the hardware tests: a simulated STM on a pty and clients of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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


@pytest.fixture
async def contract_stm(tmp_path: Path) -> AsyncIterator[SerialStm]:
    """The real board when $BORUTA_STM_PORT names its port, else the simulator."""
    port = os.environ.get(REAL_PORT_ENV)
    if port:
        async with SerialStm(port, timeout=1.0) as client:
            yield client
        return
    async with PtyStm() as sim, SerialStm(sim.path, timeout=0.5) as client:
        yield client
