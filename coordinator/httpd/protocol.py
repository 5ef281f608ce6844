"""uvicorn's HTTP protocol with the guard and two timeouts uvicorn lacks.

uvicorn closes a kept-alive connection that stays silent after a response, but not one
that never sends a request at all, nor one that sends its headers a byte at a time, nor
one whose client stops reading a response: each would hold a descriptor for ever. Here a
request's headers must be complete within ``header_timeout`` of its first byte (or of
the connection), and a response that cannot be written for ``send_timeout`` ends the
connection. The open-connection accounting is ``ConnectionGuard``'s.

uvicorn writes a response's head and its body apart: two sends, two TCP segments and two
wake-ups of the client for every small JSON answer. Writes are gathered here and go out
together once the current step of the event loop is done
(docs/architecture.md §connections).
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
from dataclasses import dataclass
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coordinator.httpd.guard import ConnectionGuard

# Bytes the kernel may hold for a client (Linux doubles it): enough for a LAN's bandwidth
# times its delay, small enough that a stalled client is noticed after a few hundred KB.
SEND_BUFFER: Final = 64 << 10


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds a client may take to send its headers, and to take a response's bytes."""

    header: float
    send: float


def guarded(guard: ConnectionGuard, timeouts: Timeouts) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=…)``."""

    class GuardedHttp(HttpToolsProtocol):
        _begun = False
        # The headers being awaited must be complete by _header_due. The timer is not
        # cancelled when they are: it is armed again only when it fires, so a busy
        # kept-alive connection makes one timer per header timeout, not one per request.
        _header_due: float | None = None
        _header_timer: asyncio.TimerHandle | None = None
        _send_timer: asyncio.TimerHandle | None = None

        @property
        def peer(self) -> str:
            return self.client[0] if self.client else "?"

        @property
        def silent(self) -> bool:
            # Bytes may wait in the kernel unread: the loop accepts a whole backlog of
            # connections before it reads any, and a client that sent its request at
            # once is not silent, only not read yet.
            return not self._begun and not _bytes_waiting(self.transport)

        def evict(self) -> None:
            self._stop_timers()
            _reset_on_close(self.transport)
            self.transport.abort()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(cast("asyncio.Transport", _Gathered(transport, self.loop)))
            _cap_send_buffer(transport)
            self._await_headers()
            guard.opened(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timers()
            guard.closed(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            self._begun = True
            super().on_message_begin()
            if self._header_due is None:  # the first request counts from the connection
                self._await_headers()

        def on_headers_complete(self) -> None:
            self._header_due = None
            super().on_headers_complete()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_timer is None:
                self._send_timer = self.loop.call_later(timeouts.send, self._not_reading)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._send_timer is not None:
                self._send_timer.cancel()
                self._send_timer = None

        def _await_headers(self) -> None:
            self._header_due = self.loop.time() + timeouts.header
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(self._header_due, self._headers_due)

        def _headers_due(self) -> None:
            self._header_timer = None
            due = self._header_due
            if due is None:
                return  # complete in time; the next request arms the timer again
            if due > self.loop.time():  # a later request's deadline
                self._header_timer = self.loop.call_at(due, self._headers_due)
                return
            self._header_due = None
            guard.count("too slow to send a request", self.peer)
            self.evict()

        def _not_reading(self) -> None:
            self._send_timer = None
            guard.count("not reading a response", self.peer)
            self.evict()

        def _stop_timers(self) -> None:
            self._header_due = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if self._send_timer is not None:
                self._send_timer.cancel()
                self._send_timer = None

    return GuardedHttp


class _Gathered:
    """A transport whose writes in one step of the event loop leave in one send.

    Everything else is the wrapped transport's; closing sends what is gathered first,
    aborting drops it (as the wrapped transport drops its own buffer)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        gathered = sum(map(len, self._pending)) if self._pending else 0
        return gathered + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _cap_send_buffer(transport: asyncio.Transport) -> None:
    """Fix the kernel's send buffer: left to autotune it grows to megabytes towards a
    client that does not read (an event stream nobody consumes), and only past it does the
    send timeout start."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass  # a socket that cannot take it keeps the kernel's default


def _bytes_waiting(transport: asyncio.Transport) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        # FIONREAD on a TCP socket: bytes received and not read yet (Linux's SIOCINQ).
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    (count,) = struct.unpack("i", waiting)
    return int(count) > 0


def _reset_on_close(transport: asyncio.Transport) -> None:
    """Make closing the socket send a reset: a plain close queues its FIN behind the
    unsent answer, and towards a client that never reads, the kernel would keep the
    socket (and its buffers) for minutes after the descriptor is gone."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed by the peer: nothing to reset
