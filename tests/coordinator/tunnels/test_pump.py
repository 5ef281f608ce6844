"""The byte pump on both event loops the coordinator runs on: what a user sends before
the sshd is reached (an SSH client's banner) reaches it first, whole and in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Worker
from coordinator.store.sql import SqlStore
from coordinator.tunnels.direct import Direct
from coordinator.tunnels.listeners import LinkTunnels
from coordinator.tunnels.pump import Pipe
from tests.coordinator.store.builders import make_worker
from tests.coordinator.tunnels.test_listeners import MB, free_ports

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    # uvloop starts reading a new connection after connection_made even when that paused
    # it; asyncio does not: the pump must keep early bytes on both.
    backend: tuple[str, dict[str, bool]] = request.param
    return backend


class Gated(Direct):
    """Dials the sshd only once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        await self.gate.wait()
        await super().connect(worker, pipe)


@pytest.fixture
async def sshd() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that records what it receives and echoes it; yields its port and record."""
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(MB):
            seen.append(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()


async def test_bytes_sent_before_the_sshd_is_reached_arrive_first_and_in_order(
    store: SqlStore, sshd: tuple[int, list[bytes]]
) -> None:
    port, seen = sshd
    connector = Gated()
    t = LinkTunnels(connector, store, free_ports(2), "127.0.0.1", "localhost")
    await t.start()
    host, tunnel_port = await t.open(RequestID(1), make_worker(1, ssh_address=f"127.0.0.1:{port}"))
    reader, writer = await asyncio.open_connection(host, tunnel_port)
    banner = b"SSH-2.0-OpenSSH_9.2\r\n"
    writer.write(banner)
    await writer.drain()
    # Not a wait for a condition: time for the loop to read the banner (uvloop) or not
    # (asyncio) while the sshd is unreached; the assertions hold either way.
    await anyio.sleep(0.05)
    writer.write(b"after")
    connector.gate.set()
    got = bytearray()
    with anyio.fail_after(10):
        while len(got) < len(banner) + 5:
            got += await reader.read(MB)
    assert bytes(got) == banner + b"after"
    assert b"".join(seen) == banner + b"after"
    writer.close()
    await t.close(RequestID(1))
