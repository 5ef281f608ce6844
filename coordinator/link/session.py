"""One dryad's link session: who it is, its bounded line framing, and its context logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import asyncssh

from coordinator.domain.ids import WorkerUUID
from coordinator.wire import MAX_LINE, LineWriter, Peer

logger = logging.getLogger(__name__)

CHUNK: Final = 64 * 1024

# Opens a forwarded-tcpip channel to the dryad's sshd: (session factory, the user's
# host, the user's port) → (channel, session).
ChannelOpener = Callable[
    [Callable[[], asyncssh.SSHTCPSession[bytes]], str, int],
    Awaitable[tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]],
]


class LineTooLong(ValueError):
    """The dryad sent more than ``wire.MAX_LINE`` bytes without a newline."""


class ChunkReader(Protocol):
    """What the framing reads from (asyncssh's stream reader qualifies)."""

    async def read(self, n: int = -1) -> bytes: ...


class BoundedLines:
    """``readline()`` over a chunk reader that never buffers more than one maximal line.

    asyncssh's own ``readline`` buffers without a bound and hands back a partial line
    once its window fills; a peer that never sends a newline must instead cost us at
    most ``MAX_LINE`` bytes and end its channel.
    """

    def __init__(self, reader: ChunkReader, limit: int = MAX_LINE) -> None:
        self._reader = reader
        self._limit = limit
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline

    async def readline(self) -> bytes:
        """The next line with its ``\\n``; at the end, what is left (``b""`` when nothing).

        :raises LineTooLong: when a line exceeds the limit.
        """
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                self._scanned = 0
                if len(line) > self._limit:
                    raise LineTooLong(f"line of {len(line)} bytes")
                return line
            self._scanned = len(self._buf)
            if self._scanned > self._limit:
                raise LineTooLong(f"no newline in {self._scanned} bytes")
            chunk = await self._reader.read(CHUNK)
            if not chunk:
                line = bytes(self._buf)
                self._buf.clear()
                return line
            self._buf += chunk


class WorkerLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each message with ``[worker=<uuid>]``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"[worker={(self.extra or {}).get('worker', '?')}] {msg}", kwargs


@dataclass(eq=False)
class DryadSession:
    """An authenticated dryad on its link channel.

    ``enrolled`` is False for a key not bound to ``uuid`` yet: such a session may only
    call ``enrol``. ``close`` ends the channel and the SSH connection under it.
    """

    uuid: WorkerUUID
    public_key: str  # OpenSSH "type base64" the dryad authenticated with
    fingerprint: str
    peer_host: str  # the dryad's IP address as the coordinator sees it
    enrolled: bool
    reader: ChunkReader
    writer: LineWriter
    close: Callable[[], None]
    peer: Peer | None = None
    sshd: ChannelOpener | None = None  # set once the dryad has offered its sshd (tunnels)
    log: WorkerLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = WorkerLog(logger, {"worker": self.uuid})
