"""Kept-alive HTTP/1.1 connections from a follower to its leader, parsed by httptools (as
uvicorn parses the requests): a forwarded request costs a fraction of a general client's
CPU (bench/README.md, follower.py).

It speaks only what a leader answers: a status, headers, and a body delimited by
``Content-Length``, chunks, or the connection's end. Anything else is an error of this
module's tree, which the forwarder turns into an answer (docs/failover.md §scale-out).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Final, cast

import httptools

CONNECT_TIMEOUT: Final = 2.0  # seconds to reach the leader: it is on the farm's LAN
POOL_TIMEOUT: Final = 10.0  # seconds a request waits for a free connection
READ_AHEAD: Final = 256 << 10  # answer bytes held for a slow client before reading stops
_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]")
_NO_BODY: Final = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


class UpstreamError(Exception):
    """The leader could not be asked, or its answer did not come whole."""


class Unreachable(UpstreamError):
    """No connection to the leader: nothing of the request reached it."""


class Lost(UpstreamError):
    """The request was sent and the connection broke before the answer's head."""


class Cut(UpstreamError):
    """The answer broke off after its head."""


class Malformed(UpstreamError):
    """The request holds what HTTP/1.1 cannot carry (a header with a line break)."""


class Answer:
    """The leader's answer: its head at once, its body as it comes (:meth:`body`). Call
    :meth:`close` when done: a whole answer gives its connection back to the pool."""

    def __init__(self, conn: _Connection, pool: Upstream) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers = conn.headers

    async def body(self) -> AsyncIterator[bytes]:
        """The body's chunks until its end.

        :raises Cut: when the connection broke before the end.
        """
        conn = self._conn
        while True:
            while conn.chunks:
                chunk = conn.chunks.popleft()
                conn.buffered -= len(chunk)
                conn.resume()
                yield chunk
            if conn.complete:
                return
            if conn.failure is not None:
                raise Cut(conn.failure)
            conn.wake.clear()
            await conn.wake.wait()

    def close(self) -> None:
        """Give the connection back when the answer was read whole, else close it."""
        self._pool.release(self._conn)


class Upstream:
    """At most ``size`` connections to ``host:port``; idle ones are kept ``keepalive`` s."""

    def __init__(self, host: str, port: int, size: int, keepalive: float) -> None:
        self.host = host
        self.port = port
        self._keepalive = keepalive
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[_Connection] = deque()
        self._closed = False
        self._authority = (f"[{host}]" if ":" in host else host).encode("ascii") + (b":%d" % port)

    async def request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Answer:
        """Send a request; its answer once the head came.

        :raises UpstreamError: (each subclass says how far it got).
        """
        head = self._head(method, target, headers, body)
        try:
            async with asyncio.timeout(POOL_TIMEOUT):
                await self._slots.acquire()
        except TimeoutError:
            raise Unreachable("too many requests in flight to the leader") from None
        try:
            conn, reused = await self._connection()
            try:
                return await self._exchange(conn, method, head + body)
            except Lost:
                if not reused or method not in (b"GET", b"HEAD", b"OPTIONS"):
                    raise
            # A kept-alive connection the leader closed as it was reused: a request that
            # changes nothing is sent once more, on a new connection.
            conn = await self._connect()
            return await self._exchange(conn, method, head + body)
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: _Connection) -> None:
        """Back to the pool if whole and reusable; else closed."""
        self._slots.release()
        if conn.reusable() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection; those in use close when released."""
        self._closed = True
        while self._idle:
            self._idle.popleft().close()

    async def _exchange(self, conn: _Connection, method: bytes, data: bytes) -> Answer:
        conn.begin(method == b"HEAD")
        conn.send(data)
        try:
            await conn.head
        except BaseException:
            conn.close()
            raise
        return Answer(conn, self)

    async def _connection(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the newest: the least likely to have been closed
            if not conn.lost and now - conn.idle_since < self._keepalive:
                return conn, True
            conn.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                transport, conn = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            raise Unreachable(f"no connection within {CONNECT_TIMEOUT:g} s") from None
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc)) from None
        # uvloop may call connection_made only after create_connection has returned. (Its
        # transports are not asyncio.Transport's subclasses: no isinstance on them.)
        conn.transport = transport
        return conn

    def _head(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        if not _TOKEN.match(method) or not target.startswith(b"/") or b" " in target:
            raise Malformed("a request line HTTP/1.1 cannot carry")
        lines = [method + b" " + target + b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers:
            if not _TOKEN.match(name) or _BAD_VALUE.search(value):
                raise Malformed(f"a header HTTP/1.1 cannot carry: {name[:40]!r}")
            has_host = has_host or name.lower() == b"host"
            lines.append(name + b": " + value + b"\r\n")
        if not has_host:
            lines.append(b"host: " + self._authority + b"\r\n")
        if body or method not in _NO_BODY:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False  # the connection ended (either side)
        self.idle_since = 0.0
        self._begin(False)

    def _begin(self, head_only: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody awaits the head of a connection that breaks while idle: no warning then.
        self.head.add_done_callback(_retrieved)
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False  # the answer lets the connection serve another request
        self.failure: str | None = None
        self.wake = asyncio.Event()
        self._paused = False

    def begin(self, head_only: bool) -> None:
        """Ready for the answer to a new request (``head_only``: a HEAD's)."""
        self._begin(head_only)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def reusable(self) -> bool:
        return (
            self.complete
            and not self.lost
            and not self.head_only
            and not self.chunks
            and self.keep_alive
        )

    def resume(self) -> None:
        if self._paused and self.buffered < READ_AHEAD // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.lost = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self.complete:
            self._fail("bytes after the answer's end")
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"an answer that is not HTTP/1.1: {exc}")
            return
        if self.buffered > READ_AHEAD and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close: the leader ended its side

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.complete:
            return
        if self.head.done() and self._delimited_by_close():
            self.on_message_complete()  # an answer whose end is the connection's
            return
        self._fail(str(exc) if exc else "the leader closed the connection")

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)
        if self.head_only:
            self.complete = True  # a HEAD's answer has no body, whatever its length says
            self.wake.set()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        self.wake.set()

    def on_message_complete(self) -> None:
        # Asked here: once the message is complete the parser no longer knows.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self.wake.set()

    def _delimited_by_close(self) -> bool:
        names = {name for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
        if not self.head.done():
            self.head.set_exception(Lost(why))
        self.wake.set()
        self.close()


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
