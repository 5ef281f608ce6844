"""The guarded protocol: a response leaves in one write, a busy kept-alive connection is never
cut by the header timeout, and a client that stalls in its headers still is."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from coordinator.httpd.guard import ConnectionGuard, ConnectionLimits
from coordinator.httpd.protocol import Timeouts, _Gathered, guarded
from tests.coordinator.uvicorn_server import serving_config

pytestmark = pytest.mark.anyio

HEADER_TIMEOUT = 0.3
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
BODY = b'{"ok":true}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await receive()
    headers = [(b"content-length", str(len(BODY)).encode()), (b"content-type", b"text/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@asynccontextmanager
async def serving(guard: ConnectionGuard) -> AsyncIterator[tuple[str, int]]:
    config = uvicorn.Config(
        app,
        http=guarded(guard, Timeouts(HEADER_TIMEOUT, 5.0)),
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=1,
    )
    async with serving_config(config, backlog=16) as address:
        yield address


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return await reader.readexactly(len(BODY))


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.writes))

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


async def test_writes_of_one_step_leave_together_after_it() -> None:
    fake = FakeTransport()
    gathered = _Gathered(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathered.write(b"HTTP/1.1 200 OK\r\n\r\n")
    gathered.write(bytearray(b"body"))
    assert fake.writes == []
    assert gathered.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
    await asyncio.sleep(0)  # one step of the loop: the flush runs
    assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    gathered.write(b"more")
    await asyncio.sleep(0)
    assert fake.writes[-1] == b"more"
    assert gathered.get_extra_info("socket") == "extra socket"  # the rest is the transport's


async def test_closing_sends_what_is_gathered_first_and_aborting_drops_it() -> None:
    fake = FakeTransport()
    gathered = _Gathered(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathered.write(b"last words")
    gathered.close()
    assert fake.writes == [b"last words"] and fake.closed
    await asyncio.sleep(0)  # the flush scheduled by the write finds nothing left
    assert fake.writes == [b"last words"]

    other = FakeTransport()
    gathered = _Gathered(other, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathered.write(b"never sent")
    gathered.abort()
    await asyncio.sleep(0)
    assert other.writes == [] and other.aborted


def data_segments_in(sock: Any) -> int:
    """Linux's tcp_info.tcpi_data_segs_in: segments with data this socket received."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    (count,) = struct.unpack_from("I", info, 152)
    return int(count)


async def test_a_head_and_body_arrive_in_one_segment() -> None:
    guard = ConnectionGuard(ConnectionLimits(16, 64))
    async with serving(guard) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        for _ in range(3):
            before = data_segments_in(sock)
            writer.write(REQUEST)
            assert await read_answer(reader) == BODY
            assert data_segments_in(sock) - before == 1
        writer.close()


async def test_a_busy_kept_alive_connection_outlives_many_header_timeouts() -> None:
    guard = ConnectionGuard(ConnectionLimits(16, 64))
    async with serving(guard) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        loop = asyncio.get_running_loop()
        until = loop.time() + 4 * HEADER_TIMEOUT
        answered = 0
        while loop.time() < until:
            writer.write(REQUEST)
            assert await read_answer(reader) == BODY
            answered += 1
        assert answered > 4
        assert guard.summary() is None  # nothing was closed
        writer.close()


async def test_a_client_stalling_in_its_next_request_headers_is_closed() -> None:
    guard = ConnectionGuard(ConnectionLimits(16, 64))
    async with serving(guard) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(3):
            writer.write(REQUEST)
            assert await read_answer(reader) == BODY
        loop = asyncio.get_running_loop()
        stalled = loop.time()
        writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        with anyio.fail_after(10 * HEADER_TIMEOUT + 5):
            try:
                rest = await reader.read()
            except ConnectionResetError:
                rest = b""
        assert rest == b""  # closed without an answer
        assert loop.time() - stalled >= HEADER_TIMEOUT * 0.9
        summary = guard.summary()
        assert summary is not None and "1 too slow to send a request" in summary
        writer.close()


async def test_a_connection_that_never_sends_is_closed_after_the_header_timeout() -> None:
    guard = ConnectionGuard(ConnectionLimits(16, 64))
    async with serving(guard) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        with anyio.fail_after(10 * HEADER_TIMEOUT + 5):
            try:
                rest = await reader.read()
            except ConnectionResetError:
                rest = b""
        assert rest == b""
        summary = guard.summary()
        assert summary is not None and "too slow to send a request" in summary
        writer.close()
