"""The ``stm`` command as a real subprocess against the control socket and the sim board."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from dryad.control import ControlServer
from dryad.stm_cli import (
    ADMIN_SOCKET,
    USER_SOCKET,
    ControlClient,
    FlagSet,
    UsageError,
    default_socket,
    go_duration,
    main,
)
from hardware import open_board
from hardware.stm.protocol import Mux

STM = Path(sys.executable).with_name("stm")  # the console script `pip install -e .` made
NOBODY = 65534


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Dryad:
    socket: Path
    state: Any

    async def stm(self, *args: str) -> Result:
        done = await anyio.run_process([str(STM), "-remote", str(self.socket), *args], check=False)
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture
async def dryad(tmp_path: Path) -> AsyncIterator[Dryad]:
    async with open_board("sim") as board:
        assert board.stm is not None and board.sim is not None
        server = ControlServer(board.stm, tmp_path / "user.sock", tmp_path / "admin.sock", "disk")
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            yield Dryad(server.user_socket, board.sim.firmware.state)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_stm_dut_switches_the_card_to_the_dut_and_powers_it(dryad: Dryad) -> None:
    assert await dryad.stm("-dut") == Result(0, "", "")
    assert dryad.state.mux is Mux.DUT and dryad.state.power


@pytest.mark.anyio
async def test_stm_ts_then_a_tick_leave_the_card_on_the_test_server(dryad: Dryad) -> None:
    assert (await dryad.stm("-ts", "-tick", "-m", "20ms")).code == 0
    assert dryad.state.mux is Mux.TS and dryad.state.power  # a tick ends powered on


@pytest.mark.anyio
async def test_flags_combine_as_in_the_original(dryad: Dryad) -> None:
    result = await dryad.stm(
        "-dut", "-cur", "-led1", "10,20,30", "-dyper2=on", "--hdmi", "on", "-clr", "-print", "hi"
    )
    assert result == Result(0, "250\n", "")
    assert (dryad.state.leds[0], dryad.state.dypers, dryad.state.hdmi) == (
        (10, 20, 30), [False, True], True,
    )  # fmt: skip


@pytest.mark.anyio
async def test_current_sampling_prints_csv(dryad: Dryad) -> None:
    assert (await dryad.stm("-cur-start", "-cur-size", "2", "-cur-duration", "20ms")).code == 0
    with anyio.fail_after(5):
        while (got := await dryad.stm("-cur-get")).out.count(",") < 1:
            pass  # each run is a round trip; the recorder fills in the meantime
    assert got == Result(0, "0,0\n", "")  # the DUT is off: 0 mA twice


@pytest.mark.anyio
async def test_a_failed_operation_exits_1_with_the_originals_wording(dryad: Dryad) -> None:
    result = await dryad.stm("-cur-get")
    assert result.code == 1
    assert result.err.endswith(" failed to get a sample: no sample was recorded\n")


@pytest.mark.anyio
async def test_conflicting_or_bad_values_exit_1_before_anything_runs(dryad: Dryad) -> None:
    for args, message in [
        (("-ts", "-dut"), "conflicting flags: DUT and TS"),
        (("-dut", "-dyper1", "of"), "unexpected value provided to dyper: of"),
        (("-dut", "-led1", "1,2"), "failed to parse the led argument"),
    ]:
        result = await dryad.stm(*args)
        assert result.code == 1 and message in result.err
    assert dryad.state.mux is Mux.TS  # -dut never ran


@pytest.mark.anyio
async def test_a_missing_socket_is_one_clear_line(tmp_path: Path) -> None:
    done = await anyio.run_process([str(STM), "-remote", str(tmp_path / "x"), "-dut"], check=False)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.count("\n") == 1
    assert f"cannot reach the dryad's control socket {tmp_path / 'x'}: no such socket" in err


@pytest.mark.skipif(os.getuid() != 0, reason="switching users needs root")
def test_a_user_outside_the_group_is_told_to_join_it() -> None:
    with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as listening:
        os.chmod(tmp, 0o755)  # only the socket's own mode may stop the user
        path = os.path.join(tmp, "user.sock")
        listening.bind(path)
        listening.listen()
        os.chmod(path, 0o660)
        code, err = _run_as_nobody(["-remote", path, "-dut"])
    assert code == 1
    assert err.endswith(f"{path}: permission denied — is this user in group stm?\n")


def _run_as_nobody(argv: list[str]) -> tuple[int, str]:
    """``stm`` in a forked child as nobody (its Python is unreadable to nobody here)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; the parent reads its result
        os.close(read_end)
        sys.stderr = os.fdopen(write_end, "w")
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        code = main(argv)
        sys.stderr.flush()
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        err = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["-nope"], 2, "flag provided but not defined: -nope"),
        (["-m", "500"], 2, 'invalid value "500" for flag -m: parse error'),
        (["-dyper1"], 2, "flag needs an argument: -dyper1"),
        (["-dut=maybe"], 2, 'invalid boolean value "maybe" for -dut'),
        (["-serve"], 2, "flag -serve is not supported: the dryad owns the STM"),
        (["-dut", "extra"], 2, "unexpected argument 'extra'"),
        (["-h"], 0, "Usage of stm:"),
    ],
)
def test_bad_command_lines_exit_as_go_flag_does(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_dummy_prints_the_operations_without_a_socket(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-dummy", "-tick", "-m", "1.5s", "-remote", "/nonexistent"]) == 0
    assert capsys.readouterr().err == 'stm: tick {"seconds": 1.5}\n'


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), ("-2s", -2.0)],
)
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1.s2", "ms"])
def test_bad_go_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="parse error"):
        go_duration(text)


def test_flag_parsing_stops_at_the_first_argument_and_at_double_dash() -> None:
    fs = FlagSet("t", "t")
    fs.add("a", False, "")
    assert fs.parse_args(["-a", "x", "-a"]) == ({"a": True}, ["x", "-a"])
    assert fs.parse_args(["--", "-a"]) == ({"a": False}, ["-a"])
    with pytest.raises(UsageError, match="not defined: ---a"):
        fs.parse_args(["---a"])


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_dryad_command_serves_stm_on_its_control_sockets(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # no coordinator: the control sockets need none
    config = tmp_path / "dryad.toml"
    config.write_text(
        f'coordinator = "127.0.0.1:{port}"\nenrol_token = "t0ken"\nprofile = "sim"\n'
        f'state_dir = "{tmp_path}/state"\n[job_user]\nmanage = false\n'
    )
    user, admin = tmp_path / "state" / "stm-user.socket", tmp_path / "state" / "stm.socket"
    async with await anyio.open_process(
        [sys.executable, "-m", "dryad", "--config", str(config)], stdout=subprocess.DEVNULL
    ) as process:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                seen += chunk
                if f"control socket ready on {admin}".encode() in seen:
                    break
        assert (await Dryad(user, None).stm("-dut")).code == 0
        with ControlClient(str(admin)) as client:
            status = client.call("status")
        process.terminate()
    assert (status["mux"], status["power"]) == ("dut", True)
    assert not user.exists() and not admin.exists()  # removed on SIGTERM


def test_the_environment_names_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated board's SSH session sets BORUTA_STM_SOCKET to its dryad's socket."""
    monkeypatch.setenv("BORUTA_STM_SOCKET", "/farm/dryad-1/state/stm-user.socket")
    assert default_socket() == "/farm/dryad-1/state/stm-user.socket"
    monkeypatch.setenv("BORUTA_STM_SOCKET", "")
    assert default_socket() == (ADMIN_SOCKET if os.geteuid() == 0 else USER_SOCKET)
