"""The control sockets against the simulated board, over real Unix sockets."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from dryad.control import ControlServer, ControlSocketError
from dryad.settings import parse
from hardware import Board, open_board
from hardware.stm.protocol import Mux

pytestmark = pytest.mark.anyio

GROUP = "disk"  # a group every Debian system has; the dryad's default is "stm"
NOBODY = 65534


@dataclass
class Served:
    board: Board
    server: ControlServer

    @property
    def state(self) -> Any:
        assert self.board.sim is not None
        return self.board.sim.firmware.state


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Not tmp_path: its 0700 parents would hide the socket's own mode from other users.
    path = Path(tempfile.mkdtemp(prefix="boruta-control-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@pytest.fixture
async def served(socket_dir: Path) -> AsyncIterator[Served]:
    async with open_board("sim") as board:
        assert board.stm is not None
        server = ControlServer(
            board.stm, socket_dir / "stm-user.socket", socket_dir / "stm.socket", GROUP
        )
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            yield Served(board, server)
            await _settle()
            tg.cancel_scope.cancel()


async def _settle() -> None:
    # Let connection handlers see their clients' EOF before the server is cancelled:
    # anyio's asyncio socket stream can otherwise resolve a cancelled read future.
    await anyio.wait_all_tasks_blocked()


class Conn:
    """A test client: one JSON line out, one back."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self, data: bytes) -> dict[str, Any]:
        await self.stream.send(data + b"\n")
        while b"\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        line, _, self.buffer = self.buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def ask(self, op: str, **args: Any) -> dict[str, Any]:
        return await self.line(json.dumps({"op": op, **args}).encode())


async def ask(path: Path, op: str, **args: Any) -> dict[str, Any]:
    async with await anyio.connect_unix(path) as stream:
        return await Conn(stream).ask(op, **args)


async def test_the_user_socket_is_0660_for_the_group_and_the_admin_socket_0600_for_root(
    served: Served,
) -> None:
    user = served.server.user_socket.stat()
    admin = served.server.admin_socket.stat()
    assert stat.S_ISSOCK(user.st_mode) and stat.S_IMODE(user.st_mode) == 0o660
    assert user.st_gid == grp.getgrnam(GROUP).gr_gid
    assert stat.S_IMODE(admin.st_mode) == 0o600 and admin.st_uid == os.getuid()


async def test_dut_on_the_user_socket_switches_the_card_and_powers_the_dut(
    served: Served,
) -> None:
    assert await ask(served.server.user_socket, "dut") == {"ok": True, "value": None}
    assert served.state.mux is Mux.DUT and served.state.power


async def test_user_operations_reach_the_simulator(served: Served) -> None:
    path = served.server.user_socket
    requests: list[tuple[str, dict[str, Any]]] = [
        ("ts", {}),
        ("dyper", {"number": 2, "on": True}),
        ("hdmi", {"on": True}),
        ("led", {"number": 1, "rgb": [1, 2, 3]}),
        ("power", {"on": True}),
        ("tick", {"seconds": 0.01}),
        ("clear", {}),
        ("print", {"x": 0, "y": 1, "text": "hello"}),
    ]
    for op, args in requests:
        assert (await ask(path, op, **args))["ok"], op
    state = served.state
    assert (state.mux, state.dypers, state.hdmi, state.leds[0]) == (
        Mux.TS, [False, True], True, (1, 2, 3),
    )  # fmt: skip
    assert await ask(path, "current") == {"ok": True, "value": 250}


async def test_raw_commands_are_refused_on_the_user_socket_and_run_on_the_admin_one(
    served: Served,
) -> None:
    refused = await ask(served.server.user_socket, "raw", command="power off")
    assert refused == {"ok": False, "error": "'raw' is an admin operation; ask as root"}
    assert await ask(served.server.admin_socket, "raw", command="mux") == {
        "ok": True, "value": ["ts"],
    }  # fmt: skip
    status = await ask(served.server.admin_socket, "status")
    assert status["value"]["mux"] == "ts" and status["value"]["recording"] is False


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"not json", "a request is one JSON object per line"),
        (b'["dut"]', 'a request is a JSON object with a string "op"'),
        (b'{"op": "reboot"}', "unknown operation 'reboot'; known: dut, ts, tick"),
        (b'{"op": "dyper", "number": 3, "on": true}', "number 3 is outside 1..2"),
        (b'{"op": "dyper", "number": 1, "on": "yes"}', "on must be true or false, got 'yes'"),
        (b'{"op": "led", "number": 1, "rgb": [1, 2, 256]}', "rgb must be three integers 0..255"),
        (b'{"op": "tick", "seconds": "1s"}', "seconds must be a number, got '1s'"),
        (b'{"op": "print", "text": "seventeen chars!!"}', "has 17 characters; the STM takes"),
    ],
)
async def test_a_bad_request_gets_an_error_line_and_the_connection_goes_on(
    served: Served, line: bytes, error: str
) -> None:
    async with await anyio.connect_unix(served.server.user_socket) as stream:
        conn = Conn(stream)
        reply = await conn.line(line)
        assert reply["ok"] is False and error in reply["error"]
        assert await conn.ask("dut") == {"ok": True, "value": None}


async def test_an_overlong_request_is_refused_and_the_connection_closed(served: Served) -> None:
    async with await anyio.connect_unix(served.server.user_socket) as stream:
        conn = Conn(stream)
        reply = await conn.line(b"x" * 70_000)
        assert reply == {"ok": False, "error": "request longer than 65536 bytes"}
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await conn.ask("dut")


async def test_current_sampling_records_until_stopped(served: Served) -> None:
    path = served.server.user_socket
    assert (await ask(path, "current-get"))["error"] == "no sample was recorded"
    assert (await ask(path, "current-start", samples=1000, duration=10.0))["ok"]
    with anyio.fail_after(5):
        while len((await ask(path, "current-get"))["value"]) < 2:
            pass  # each round trip lets the recorder run; no sleep needed
    assert (await ask(path, "current-stop"))["ok"]
    samples = (await ask(path, "current-get"))["value"]
    assert samples and set(samples) == {0}  # the DUT is off after boot: 0 mA
    assert (await ask(path, "current-get"))["value"] == samples  # stopped: no more


async def test_a_jobs_recording_ends_with_the_job(served: Served) -> None:
    path = served.server.user_socket
    assert (await ask(path, "current-start", samples=1000, duration=10.0))["ok"]
    await served.server.end_job()
    assert (await ask(path, "current-get"))["error"] == "no sample was recorded"
    assert (await ask(served.server.admin_socket, "status"))["value"]["recording"] is False


async def test_a_sampling_period_under_3_ms_is_refused(served: Served) -> None:
    reply = await ask(served.server.user_socket, "current-start", samples=1000, duration=1.0)
    assert "is under 3 ms" in reply["error"]


def _connect_as(path: Path, groups: list[int]) -> int:
    """Connect from a forked child running as nobody with *groups*; its errno, or 0."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its exit code is the result
        code = 0
        try:
            os.setgroups(groups)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
        except OSError as exc:
            code = exc.errno or 255
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.getuid() != 0, reason="switching users needs root")
async def test_only_members_of_the_group_reach_the_user_socket_and_only_root_the_admin_one(
    served: Served,
) -> None:
    gid = grp.getgrnam(GROUP).gr_gid
    user, admin = served.server.user_socket, served.server.admin_socket
    assert _connect_as(user, []) == 13  # EACCES
    assert _connect_as(user, [gid]) == 0
    assert _connect_as(admin, [gid]) == 13


async def test_sockets_are_removed_when_the_server_stops(socket_dir: Path) -> None:
    async with open_board("sim") as board:
        assert board.stm is not None
        server = ControlServer(board.stm, socket_dir / "u", socket_dir / "a", GROUP)
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            tg.cancel_scope.cancel()
    assert os.listdir(socket_dir) == []


async def test_a_stale_socket_is_replaced(served: Served) -> None:
    stale = served.server.user_socket.with_name("stale")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))  # bound, never listening: what a crashed dryad leaves
    assert served.board.stm is not None
    second = ControlServer(served.board.stm, stale, stale.with_name("admin2"), GROUP)
    async with anyio.create_task_group() as tg:
        await tg.start(second.run)
        assert (await ask(stale, "ts"))["ok"]
        await _settle()
        tg.cancel_scope.cancel()


async def test_a_socket_another_server_serves_is_not_taken_over(served: Served) -> None:
    assert served.board.stm is not None
    user = served.server.user_socket
    second = ControlServer(served.board.stm, user, user.with_name("admin2"), GROUP)
    with pytest.raises(ControlSocketError, match="is served by another process"):
        await second.run()
    assert (await ask(user, "ts"))["ok"]


async def test_a_missing_group_leaves_the_user_socket_to_root_and_says_so(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_board("sim") as board:
        assert board.stm is not None
        server = ControlServer(board.stm, socket_dir / "u", socket_dir / "a", "no-such-grp")
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            assert (socket_dir / "u").stat().st_gid == os.getgid()
            tg.cancel_scope.cancel()
    assert "group no-such-grp does not exist" in caplog.text


def test_a_simulated_dryad_keeps_its_sockets_in_its_state_directory(tmp_path: Path) -> None:
    base = {"coordinator": "h", "state_dir": str(tmp_path)}
    assert parse({**base, "profile": "muxpi"}).control_sockets() == (
        Path("/run/boruta/stm-user.socket"), Path("/run/boruta/stm.socket"),
    )  # fmt: skip
    assert parse({**base, "profile": "sim"}).control_sockets() == (
        tmp_path / "stm-user.socket", tmp_path / "stm.socket",
    )  # fmt: skip
    configured = parse({**base, "profile": "sim", "control": {"user_socket": "/x/u"}})
    assert configured.control_sockets()[0] == Path("/x/u")
