"""LinkTunnels in direct mode against an in-test echo "sshd": copying, close, ports, faults."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.model import Worker
from coordinator.errors import TunnelUnavailable, WorkerNotAssigned
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.settings import Settings, SettingsError
from coordinator.store.sql import SqlStore
from coordinator.tunnels.direct import Direct
from coordinator.tunnels.listeners import LinkTunnels
from coordinator.tunnels.ports import public_address
from tests.coordinator.doubles import ALICE, RecordingDryads, idle_worker
from tests.coordinator.store.builders import make_worker

pytestmark = pytest.mark.anyio

MB = 1 << 20


def free_ports(n: int) -> range:
    """``n`` consecutive loopback ports that are free now (good enough for a test)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + n < 65536 and all(_free(p) for p in range(first, first + n)):
            return range(first, first + n)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
async def sshd() -> AsyncIterator[int]:
    """An echo server standing in for the board's sshd; yields its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(MB):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def board(port: int) -> Worker:
    return make_worker(1, ssh_address=f"127.0.0.1:{port}")


def tunnels(store: SqlStore, ports: range) -> LinkTunnels:
    return LinkTunnels(Direct(), store, ports, "127.0.0.1", "localhost")


async def test_bytes_go_both_ways_and_close_drops_every_connection(
    store: SqlStore, sshd: int
) -> None:
    t = tunnels(store, free_ports(3))
    await t.start()
    host, port = await t.open(RequestID(1), board(sshd))
    assert host == "127.0.0.1"
    reader, writer = await asyncio.open_connection(host, port)
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than every buffer on the way
    writer.write(payload)
    got = bytearray()
    with anyio.fail_after(10):
        while len(got) < len(payload):
            got += await reader.read(MB)
    assert got == payload

    await t.close(RequestID(1))
    with anyio.fail_after(5):
        assert await reader.read() == b""  # the user's connection ended with the job
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)  # and nobody listens any more
    writer.close()
    await t.close(RequestID(1))  # idempotent


async def test_a_reopened_tunnel_keeps_its_port_across_a_restart(
    store: SqlStore, sshd: int
) -> None:
    ports = free_ports(5)
    first = tunnels(store, ports)
    await first.start()
    _, port = await first.open(RequestID(7), board(sshd))
    _, other = await first.open(RequestID(8), board(sshd))
    await first.aclose()  # the coordinator stops
    again = tunnels(store, ports)
    await again.start()
    assert (await again.open(RequestID(8), board(sshd)))[1] == other
    assert (await again.open(RequestID(7), board(sshd)))[1] == port
    await again.aclose()


async def test_a_full_range_is_a_clear_error(
    store: SqlStore, sshd: int, caplog: pytest.LogCaptureFixture
) -> None:
    ports = free_ports(1)
    t = tunnels(store, ports)
    await t.start()
    await t.open(RequestID(1), board(sshd))
    with pytest.raises(TunnelUnavailable, match=f"no free tunnel port in {ports[0]}-{ports[0]}"):
        await t.open(RequestID(2), board(sshd))
    assert "request 2 to worker" in caplog.text and "widen tunnel_ports" in caplog.text
    await t.close(RequestID(1))
    assert (await t.open(RequestID(2), board(sshd)))[1] == ports[0]  # free again
    await t.aclose()


async def test_an_unreachable_sshd_drops_the_user_at_once_with_a_reason(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    dead = free_ports(1)[0]
    t = tunnels(store, free_ports(1))
    await t.start()
    host, port = await t.open(RequestID(3), board(dead))
    reader, writer = await asyncio.open_connection(host, port)
    with anyio.fail_after(5):
        said = await reader.read()
    worker = make_worker(1).uuid
    assert said.startswith(f"boruta: worker {worker} unreachable:".encode())
    assert f"tunnel of request 3 (port {port}, worker {worker}): connection from" in caplog.text
    writer.close()
    await t.aclose()


async def test_acquire_tells_why_a_matched_request_has_no_tunnel(
    store: SqlStore, clock: FakeClock, sshd: int
) -> None:
    class Full:
        async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
            raise TunnelUnavailable("no free tunnel port in 20000-20000")

        async def close(self, rid: RequestID) -> None:
            return None

    svc = Service(store, RecordingDryads(), Full(), clock, keys=KeyPool(2, processes=False))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        await idle_worker(svc, 1)
        rid = await svc.new_request(ALICE, 4, {})
        with pytest.raises(TunnelUnavailable, match="no free tunnel port") as raised:
            with anyio.fail_after(5):
                await svc.acquire_worker(ALICE, rid, wait=30)  # told at once, not after 30 s
        assert raised.value.status == 503
        tg.cancel_scope.cancel()
    assert not isinstance(raised.value, WorkerNotAssigned)


async def test_the_public_host_is_an_ip_literal() -> None:
    assert await public_address("localhost", "") == "127.0.0.1"
    assert await public_address("192.0.2.7", "127.0.0.1") == "192.0.2.7"
    assert await public_address("", "127.0.0.2") == "127.0.0.2"
    with pytest.raises(TunnelUnavailable, match="does not resolve"):
        await public_address("no-such-host.invalid", "")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tunnel_mode": "ssh"}, "tunnel_mode must be dialback, link, direct or none"),
        ({"dialback": "7176"}, "dialback must be HOST:PORT or empty"),
        ({"dialback": "127.0.0.1:70000"}, "dialback must be HOST:PORT or empty"),
        ({"link": "127.0.0.1:65535"}, "dialback must be set when link uses port 65535"),
        ({"tunnel_ports": "20000-"}, "tunnel_ports must be FIRST-LAST"),
        ({"tunnel_ports": "3-2"}, "tunnel_ports must be FIRST-LAST"),
        ({"tunnel_ports": "0-10"}, "tunnel_ports must be FIRST-LAST"),
        ({"tunnel_ports": "x"}, "tunnel_ports must be FIRST-LAST"),
    ],
)
def test_bad_tunnel_settings_are_refused(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        replace(Settings(), **changes).validate()  # type: ignore[arg-type]


def test_dial_backs_are_accepted_next_to_the_link_unless_told() -> None:
    assert Settings().validate().dialback_address == ("127.0.0.1", 7176)
    assert Settings(link="[::1]:9000").validate().dialback_address == ("::1", 9001)
    assert Settings(link="127.0.0.1:0").validate().dialback_address == ("127.0.0.1", 0)
    assert Settings(dialback="0.0.0.0:7000").validate().dialback_address == ("0.0.0.0", 7000)


def test_tunnel_settings_defaults() -> None:
    s = Settings().validate()
    assert (s.tunnel_mode, s.tunnel_port_range, s.tunnel_bind_host, s.public_host) == (
        "dialback",
        range(20000, 21000),
        "127.0.0.1",
        "",
    )
    assert replace(s, tunnel_ports="2222").tunnel_port_range == range(2222, 2223)
