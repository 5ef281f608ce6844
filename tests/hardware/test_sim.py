"""The simulator as a program (stm-sim) and its stdin controls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from hardware.sim.cli import control, parse_args
from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm
from hardware.stm.protocol import Mux

pytestmark = pytest.mark.anyio


async def test_stm_sim_prints_its_pty_and_writes_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    code = "from hardware.sim.cli import main; main()"
    command = [sys.executable, "-c", code, "--state", str(state), "--baud", "0"]
    async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        first = b""
        with anyio.fail_after(10):
            while not first.endswith(b"\n"):
                first += await proc.stdout.receive(1)
        path = first.decode().strip()
        assert path.startswith("/dev/pts/")
        async with SerialStm(path) as stm:
            await stm.dut()
            with stm.presses() as presses, anyio.fail_after(5):
                await proc.stdin.send(b"press 2\n")
                assert await presses.receive() == 2
        proc.terminate()
    assert json.loads(state.read_text())["mux"] == "dut"


async def test_controls_apply_faults_and_state() -> None:
    sim = PtyStm(Firmware())
    assert await control(sim, "mute") == "ok" and sim.muted
    assert await control(sim, "unmute") == "ok" and not sim.muted
    await control(sim, "current 400")
    await control(sim, "key 2 down")
    await control(sim, "baud 0")
    await control(sim, "garble")
    await control(sim, "half")
    await control(sim, "reboot")
    assert sim.firmware.state.keys == [False, False]  # a reboot forgets injected state
    assert sim.baud is None
    assert (await control(sim, "fly")).startswith("?")


def test_cli_defaults_to_the_real_baud_rate() -> None:
    assert parse_args([]).baud == 115200


async def test_controls_that_need_a_running_pty(tmp_path: Path) -> None:
    async with PtyStm(link=tmp_path / "tty") as sim, SerialStm(sim.path) as stm:
        assert (await control(sim, "drop")).startswith("dropped")
        with anyio.fail_after(5):
            while True:
                try:
                    assert await stm.mux() is Mux.TS
                    break
                except OSError:
                    continue
        assert (await control(sim, "press 1")) == "ok"


def test_firmware_line_buffer_and_tokens_are_bounded() -> None:
    fw = Firmware()
    fw.receive(b"led " + b"1" * 100 + b"\n")
    assert len(fw.log[-1]) == 64
    out, _, _ = fw.receive(b"\n")
    assert out == b"\n\r"  # an empty line prints nothing but its echo
