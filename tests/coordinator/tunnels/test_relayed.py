"""Dial-back tunnels end to end in one process: the coordinator's listener and relay, the
dryad's ``DialBacks`` (called by a stand-in link), and an in-test "sshd"."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from coordinator import wire
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.store.sql import SqlStore
from coordinator.tunnels.dialback import DialBackListener
from coordinator.tunnels.listeners import LinkTunnels
from coordinator.tunnels.pump import Pipe
from coordinator.tunnels.relayed import Relayed
from dryad.dialback import DialBacks
from tests.coordinator.store.builders import make_worker
from tests.coordinator.tunnels.test_listeners import free_ports

pytestmark = pytest.mark.anyio

MB = 1 << 20
WORKER = make_worker(1)


class StandInLink:
    """The link as the coordinator sees it: ``dial_back`` goes to the dryad's handler,
    or does what ``mode`` says: "dial", "cannot", "silent", "lie", "old" or "gone"."""

    def __init__(self, dryad: DialBacks) -> None:
        self.dryad = dryad
        self.mode = "dial"
        self.calls = 0
        self.secrets: list[bytes] = []
        self.hold: anyio.Event | None = None  # set: the dryad waits for it before dialling

    async def dial_back(self, worker: WorkerUUID, port: int, secret: bytes) -> wire.DialedBack:
        self.calls += 1
        self.secrets.append(secret)
        if self.hold is not None:
            await self.hold.wait()
        params = wire.DialBack.of(port, secret)
        if self.mode == "dial":
            return await self.dryad.dial_back(params)
        if self.mode == "cannot":
            return wire.DialedBack(False, "connect: No route to host")
        if self.mode == "silent":
            await anyio.sleep_forever()
        if self.mode == "old":
            raise wire.RpcError(wire.METHOD_NOT_FOUND, "no method 'dial_back'")
        if self.mode == "gone":
            raise ConnectionError(f"dryad {worker} is not connected")
        return wire.DialedBack(True)  # "lie": says it dialled, but nothing comes


class CountingDirect:
    """The fallback: dials the sshd from here (standing in for the link), and counts."""

    def __init__(self) -> None:
        self.used = 0

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        from coordinator.tunnels.direct import Direct

        self.used += 1
        await Direct().connect(worker, pipe)


class Harness:
    def __init__(self, tunnels: LinkTunnels, relayed: Relayed, link: StandInLink,
                 fallback: CountingDirect, dryad: DialBacks, sshd: int) -> None:  # fmt: skip
        self.tunnels, self.relayed, self.link = tunnels, relayed, link
        self.fallback, self.dryad, self.sshd = fallback, dryad, sshd
        self.port = 0

    async def open(self, rid: int = 1, sshd: int | None = None) -> int:
        worker = make_worker(1, ssh_address=f"127.0.0.1:{sshd or self.sshd}")
        _, self.port = await self.tunnels.open(RequestID(rid), worker)
        return self.port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(MB):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def sshd() -> AsyncIterator[int]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=2048)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def make_harness(store: SqlStore, sshd: int, **relayed: Any) -> Harness:
    dryad = DialBacks("127.0.0.1", sshd)
    dryad.start()
    link = StandInLink(dryad)
    fallback = CountingDirect()
    listener = DialBackListener("127.0.0.1", 0, secret_timeout=relayed.pop("secret_timeout", 5))
    connector = Relayed(link, listener, fallback, **relayed)
    tunnels = LinkTunnels(connector, store, free_ports(3), "127.0.0.1", "127.0.0.1")
    await tunnels.start()
    return Harness(tunnels, connector, link, fallback, dryad, sshd)


@pytest.fixture
async def h(store: SqlStore, sshd: int) -> AsyncIterator[Harness]:
    harness = await make_harness(store, sshd)
    await harness.open()
    yield harness
    await harness.tunnels.aclose()
    harness.dryad.stop()


async def until(check: Callable[[], Any], seconds: float = 10) -> None:
    """Wait for a condition; polled, as the relays change it in their own threads."""
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - no event crosses from the relay threads
            await anyio.sleep(0.01)


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    with anyio.fail_after(20):
        return await reader.readexactly(n)


async def test_bytes_are_relayed_through_the_dial_back_not_the_link(h: Harness) -> None:
    reader, writer = await h.connect()
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB
    writer.write(payload)
    assert await read_exactly(reader, len(payload)) == payload
    assert h.relayed.relay.count(RequestID(1)) == 1  # the coordinator's relay holds it
    assert h.dryad.relay.count() == 1  # and the dryad's
    assert (h.link.calls, h.fallback.used) == (1, 0)
    writer.close()
    await until(lambda: h.relayed.relay.count() == 0 and h.dryad.relay.count() == 0)


async def test_the_users_half_close_reaches_the_sshd_whose_answer_still_comes_back(
    h: Harness,
) -> None:
    reader, writer = await h.connect()
    writer.write(b"last words")
    writer.write_eof()
    # The echo "sshd" answers after the user's end of stream, then ends its own.
    assert await read_exactly(reader, 10) == b"last words"
    with anyio.fail_after(10):
        assert await reader.read() == b""
    await until(lambda: h.relayed.relay.count() == 0 and h.dryad.relay.count() == 0)
    writer.close()


async def test_the_sshds_half_close_reaches_the_user_who_may_still_send(store: SqlStore) -> None:
    heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def banner_then_listen(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-test\r\n")
        w.write_eof()  # the sshd's half-close first
        heard.set_result(await reader.read())  # to the user's end of stream
        w.close()

    server = await asyncio.start_server(banner_then_listen, "127.0.0.1", 0)
    h = await make_harness(store, server.sockets[0].getsockname()[1])
    try:
        await h.open()
        reader, writer = await h.connect()
        with anyio.fail_after(10):
            assert await reader.read() == b"SSH-2.0-test\r\n"  # then end of stream
        writer.write(b"still talking")
        writer.write_eof()
        with anyio.fail_after(10):
            assert await heard == b"still talking"
        await until(lambda: h.relayed.relay.count() == 0 and h.dryad.relay.count() == 0)
        writer.close()
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()
        server.close()


async def connected(port: int) -> socket.socket:
    sock = await anyio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port))
    sock.settimeout(10)
    return sock


async def test_a_users_reset_resets_the_sshds_connection(store: SqlStore) -> None:
    lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def sshd(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-test\r\n")
        try:
            while await reader.read(MB):
                pass
            lost.set_result(None)
        except ConnectionResetError as exc:
            lost.set_result(exc)
        w.close()

    server = await asyncio.start_server(sshd, "127.0.0.1", 0)
    h = await make_harness(store, server.sockets[0].getsockname()[1])
    try:
        await h.open()
        sock = await connected(h.port)
        # Blocking calls in a thread: the coordinator and the dryad run on this loop.
        assert await anyio.to_thread.run_sync(sock.recv, 64) == b"SSH-2.0-test\r\n"  # up
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        with anyio.fail_after(10):
            assert isinstance(await lost, ConnectionResetError)  # not a clean end
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()
        server.close()


async def test_an_sshds_reset_reaches_the_user_as_a_reset(store: SqlStore) -> None:
    async def sshd(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-test\r\n")
        await reader.read(1)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    server = await asyncio.start_server(sshd, "127.0.0.1", 0)
    h = await make_harness(store, server.sockets[0].getsockname()[1])
    try:
        await h.open()
        sock = await connected(h.port)
        assert await anyio.to_thread.run_sync(sock.recv, 64) == b"SSH-2.0-test\r\n"
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            await anyio.to_thread.run_sync(sock.recv, 64)
        sock.close()
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()
        server.close()


async def exchange(h: Harness, message: bytes = b"ping") -> None:
    reader, writer = await h.connect()
    writer.write(message)
    assert await read_exactly(reader, len(message)) == message
    writer.close()


@pytest.mark.parametrize("mode", ["silent", "lie", "cannot", "old"])
async def test_a_dial_back_that_does_not_come_falls_back_to_the_link_logged_once(
    store: SqlStore, sshd: int, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(store, sshd, dial_wait=0.5, retry_after=3600)
    try:
        await h.open()
        h.link.mode = mode
        await exchange(h, b"first")
        await exchange(h, b"second")  # straight to the link: no second wait
        assert (h.link.calls, h.fallback.used) == (1, 2)
        failed = [r for r in caplog.records if "dial-back failed" in r.getMessage()]
        assert len(failed) == 1 and failed[0].levelno == logging.WARNING
        assert str(WORKER.uuid) in failed[0].getMessage()
        assert h.relayed.relay.count() == 0
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()


async def test_dial_back_is_tried_again_after_a_while_and_said_to_work(
    store: SqlStore, sshd: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "coordinator.tunnels.relayed")
    h = await make_harness(store, sshd, dial_wait=0.5, retry_after=0.0)
    try:
        await h.open()
        h.link.mode = "cannot"
        await exchange(h)
        await exchange(h)  # tried again at once (retry_after 0), failed the same way
        assert (h.link.calls, h.fallback.used) == (2, 2)
        assert caplog.text.count("dial-back failed") == 1  # the same reason: told once
        h.link.mode = "dial"
        await exchange(h)
        assert (h.link.calls, h.fallback.used) == (3, 2)
        assert "dial-back works again" in caplog.text
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()


async def test_an_unreachable_sshd_or_dryad_drops_the_user_with_a_reason(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    dead = free_ports(1)[0]
    h = await make_harness(store, dead)
    try:
        await h.open()
        reader, writer = await h.connect()
        with anyio.fail_after(10):
            said = await reader.read()
        assert said.startswith(
            f"boruta: worker {WORKER.uuid} unreachable: its sshd refused the connection".encode()
        )
        writer.close()
        h.link.mode = "gone"
        reader, writer = await h.connect()
        with anyio.fail_after(10):
            said = await reader.read()
        assert b"is not connected" in said
        assert h.fallback.used == 0  # the link would not reach either
        assert f"worker {WORKER.uuid}): connection from 127.0.0.1" in caplog.text
        writer.close()
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()


async def dial_raw(port: int, data: bytes) -> bytes:
    """Connect to the dial-back port, send ``data``, and read until it is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        with anyio.fail_after(10):
            return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def pending_user(h: Harness) -> tuple[asyncio.StreamWriter, Awaitable[None]]:
    """A user connection whose dial-back is held back; returns a check that it works."""
    h.link.hold = anyio.Event()
    reader, writer = await h.connect()
    await until(lambda: h.link.secrets)

    async def works() -> None:
        writer.write(b"unaffected")
        assert await read_exactly(reader, 10) == b"unaffected"

    return writer, works()


async def test_a_wrong_secret_is_closed_and_logged_once_and_harms_no_waiting_user(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    writer, works = await pending_user(h)
    port = h.relayed.listener.port
    assert await dial_raw(port, bytes(wire.SECRET_SIZE)) == b""
    assert await dial_raw(port, b"\xff" * wire.SECRET_SIZE) == b""
    lines = [r for r in caplog.records if "dial-back port was closed" in r.getMessage()]
    assert len(lines) == 1 and "wrong, used or expired secret" in lines[0].getMessage()
    assert h.link.hold is not None
    h.link.hold.set()
    await works
    writer.close()


async def test_a_replayed_secret_is_refused(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await exchange(h)
    used = h.link.secrets[-1]
    writer, works = await pending_user(h)  # a connection waits: secrets are awaited
    assert await dial_raw(h.relayed.listener.port, used) == b""
    assert "wrong, used or expired secret" in caplog.text
    assert h.link.hold is not None
    h.link.hold.set()
    await works
    writer.close()


async def test_an_expired_secret_is_refused(
    store: SqlStore, sshd: int, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(store, sshd, dial_wait=0.3)
    try:
        await h.open()
        h.link.mode = "lie"  # the dial-back never comes: the user goes through the link
        await exchange(h)
        late = h.link.secrets[-1]
        assert await dial_raw(h.relayed.listener.port, late) == b""
        assert "wrong, used or expired secret" in caplog.text
        assert h.relayed.relay.count() == 0
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()


async def test_a_silent_dial_back_is_closed_after_its_secret_timeout(
    store: SqlStore, sshd: int, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(store, sshd, secret_timeout=0.2)
    try:
        await h.open()
        assert await dial_raw(h.relayed.listener.port, b"half a secret") == b""
        assert "sent no secret in time" in caplog.text
        await exchange(h)  # the listener still serves
    finally:
        await h.tunnels.aclose()
        h.dryad.stop()


async def test_a_job_ending_mid_transfer_closes_both_sides_promptly(h: Harness) -> None:
    reader, writer = await h.connect()
    chunk = b"z" * MB
    writer.write(chunk)
    await read_exactly(reader, MB)  # relayed: both relays hold the connection

    async def keep_sending() -> None:
        try:
            while True:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_sending)
        await h.tunnels.close(RequestID(1))
        with anyio.fail_after(10):
            try:
                while await reader.read(MB):
                    pass
            except ConnectionResetError:
                pass  # unread data makes the kernel reset rather than end: also prompt
        tg.cancel_scope.cancel()
    await until(lambda: h.relayed.relay.count() == 0)
    await until(lambda: h.dryad.relay.count() == 0)  # the board's side ended with it
    writer.close()


async def test_over_a_thousand_connections_at_once_through_one_tunnel(h: Harness) -> None:
    count = 1024
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, count, 128):  # in bursts, all open together in the end
        streams += await asyncio.gather(*(h.connect() for _ in range(start, start + 128)))
    await until(lambda: h.relayed.relay.count(RequestID(1)) == count, seconds=60)
    assert h.dryad.relay.count() == count
    for i, (_, writer) in enumerate(streams):
        writer.write(f"connection {i:04d}".encode())
    for i, (reader, _) in enumerate(streams):
        assert await read_exactly(reader, 15) == f"connection {i:04d}".encode()
    assert (h.link.calls, h.fallback.used) == (count, 0)
    for _, writer in streams:
        writer.close()
    await until(lambda: h.relayed.relay.count() == 0 and h.dryad.relay.count() == 0, 60)
