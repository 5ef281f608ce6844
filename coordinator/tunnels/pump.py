"""The byte pump: a user's connection and the sshd's, each end copying into the other."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import asyncssh

if TYPE_CHECKING:
    from coordinator.tunnels.listeners import Tunnel


class Transport(Protocol):
    """What both kinds of end write to: an asyncio transport or an SSH channel."""

    def write(self, data: bytes, /) -> None: ...
    def write_eof(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


class _End:
    """One side of a user's connection; what it reads goes to the other side.

    Flow control is TCP's and SSH's own: when one side's writes back up, the other
    side stops reading until they drain, so no buffer here grows without bound.
    """

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.transport: Transport | None = None
        self.eof = False

    def _peer(self) -> _End | None:
        return self.pipe.far if self is self.pipe.near else self.pipe.near

    def _made(self, transport: Transport) -> None:
        self.transport = transport
        if self.pipe.closed:
            transport.close()  # the job ended while this end was connecting
        else:
            self.pipe.attached(self)

    def _data(self, data: bytes) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.write(data)

    def _eof(self) -> bool:
        self.eof = True
        peer = self._peer()
        if peer is None or peer.transport is None:
            return False
        try:
            peer.transport.write_eof()
        except OSError:
            return False
        return not peer.eof  # stay half-open until both sides have finished sending

    def _lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.pipe.close(exc, self)

    def _pause(self) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def _resume(self) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()

    # The callbacks asyncio and asyncssh both make, under the same names.
    def eof_received(self) -> bool:
        return self._eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self._pause()

    def resume_writing(self) -> None:
        self._resume()


class SocketEnd(_End, asyncio.Protocol):
    """A TCP socket's end: the user's, or the sshd's in direct mode."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # interactive shells
        # A stream transport; uvloop's are not subclasses of asyncio's, so no isinstance.
        self._made(cast("asyncio.Transport", transport))

    def data_received(self, data: bytes) -> None:
        self._data(data)


class ChannelEnd(_End, asyncssh.SSHTCPSession[bytes]):
    """The sshd's end through the link: an SSH channel the dryad connects to its sshd."""

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._made(chan)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._data(data)


@dataclass(eq=False)
class Pipe:
    """One user connection through a job's tunnel: the user's end and the sshd's."""

    tunnel: Tunnel
    orig: tuple[str, int] = ("", 0)
    near: _End | None = None
    far: _End | None = None
    closed: bool = False
    connected: bool = False

    def attached(self, end: _End) -> None:
        if end is self.near:
            return
        self.connected = True
        if isinstance(self.near, UserEnd):
            self.near.flush_early()
        if self.near is not None and self.near.transport is not None:
            self.near.transport.resume_reading()  # paused until the sshd was reached

    def refuse(self, reason: str) -> None:
        """Tell a user who looks (ssh -v shows lines before the SSH banner), then close."""
        if self.near is not None and self.near.transport is not None:
            self.near.transport.write(f"boruta: {reason}\r\n".encode())
        self.close(None, None)

    def close(self, exc: BaseException | None, by: _End | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.tunnel.pipes.discard(self)
        if by is self.far and self.far is not None and exc is not None:
            self.tunnel.log(logging.WARNING, "connection from %s:%d lost: %s", *self.orig, exc)
        for end in (self.near, self.far):
            if end is not None:
                end.close()


class UserEnd(SocketEnd):
    """The user's socket: reads nothing until the sshd is reached, then copies.

    uvloop starts reading after ``connection_made`` even when that paused the transport,
    so what arrives before the sshd is reached (an SSH client's banner) is kept, reading
    is paused again, and the sshd gets it first once reached."""

    early: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        cast("asyncio.Transport", transport).pause_reading()
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.pipe.orig = (str(peer[0]), int(peer[1]))
        self.pipe.tunnel.reach(self.pipe)

    def data_received(self, data: bytes) -> None:
        if self.pipe.connected:
            self._data(data)
            return
        if self.early is None:
            self.early = []
        self.early.append(data)
        if self.transport is not None:
            self.transport.pause_reading()

    def flush_early(self) -> None:
        """Hand on what arrived before the sshd was reached."""
        early, self.early = self.early, None
        for data in early or ():
            self._data(data)
