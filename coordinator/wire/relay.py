"""The relay: pairs of sockets copied into each other by one thread, by kernel splice.

Both ends of a dial-back tunnel use it (docs/link-protocol.md §dial-back): the coordinator
between a user's socket and the dryad's dial-back socket, the dryad between that socket and
its local sshd. The bytes are the user's own SSH session, so nothing here reads them: each
direction moves them from one socket through a kernel pipe into the other with
``os.splice`` (never into Python), falling back to ``recv_into``/``send`` with a reused
buffer where splice is refused. One thread with its own epoll serves every pair, so a bulk
copy never waits on, nor slows, an asyncio event loop.

A wake-up that moved a bulk copy's worth (``BULK``) waits ``COALESCE`` before the next, so
the next moves more at once: fewer wake-ups per GiB (at most 1 ms more latency while a
bulk copy runs in the same relay). Typed keys alone never wait.

Flow control is readiness: a direction reads its source only when its pipe is empty, so
a destination that does not keep up stops the reading and TCP pushes back on the sender.
An end of stream is passed on as ``shutdown(SHUT_WR)`` once what came before it is
delivered (half-close), and a pair closes when both directions have ended. A reset or
any other error on either socket resets the other (``SO_LINGER`` 0) and closes both.

Stdlib only: the dryad ships ``coordinator.wire`` alone.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Final

logger = logging.getLogger(__name__)

PIPE_SIZE: Final = 256 << 10  # bytes a direction moves per splice; the pipe is made this big
BUFFER_SIZE: Final = 64 << 10  # the fallback's buffer per busy direction
SPARE: Final = 64  # idle pipes and buffers kept for reuse; the rest are closed
ROUNDS: Final = 8  # reads per readiness event before others get their turn
BULK: Final = 16 << 10  # bytes moved in one wake-up that make it a bulk copy's
# Seconds a bulk copy's next round waits: at 150 MiB/s about 150 KiB more arrive, so each
# wake-up moves more; measured on 2 loaded cores, it halves the wake-ups and cuts the CPU
# per GiB by a third without slowing the copy (docs/architecture.md §throughput).
COALESCE: Final = 0.001
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# splice refuses some sockets (not every kernel or family supports it): those copy in Python.
_NO_SPLICE: Final = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def splice_available() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python 3.10+)."""
    return sys.platform == "linux" and hasattr(os, "splice")


class _Pipe:
    """A kernel pipe holding what one direction read but has not delivered yet."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.size = PIPE_SIZE
        try:
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's pipe allowance: the default size still works
            self.size = fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ)
        self.pending = 0

    def fill(self, src: socket.socket) -> int:
        n = os.splice(src.fileno(), self.w, self.size, flags=_SPLICE_FLAGS)
        self.pending += n
        return n

    def drain(self, dst: socket.socket) -> None:
        self.pending -= os.splice(self.r, dst.fileno(), self.pending, flags=_SPLICE_FLAGS)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _Buffer:
    """The fallback: a reused buffer, read into and sent from without copies in Python."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(BUFFER_SIZE))
        self.start = self.end = 0

    @property
    def pending(self) -> int:
        return self.end - self.start

    def fill(self, src: socket.socket) -> int:
        n = src.recv_into(self.view)
        self.start, self.end = 0, n
        return n

    def drain(self, dst: socket.socket) -> None:
        self.start += dst.send(self.view[self.start : self.end])

    def close(self) -> None:
        self.view.release()


_Carrier = _Pipe | _Buffer


class _Flow:
    """One direction of a pair: from ``src`` to ``dst``."""

    __slots__ = ("carrier", "dst", "ended", "splice", "src")

    def __init__(self, src: socket.socket, dst: socket.socket, splice: bool) -> None:
        self.src = src
        self.dst = dst
        self.splice = splice
        self.carrier: _Carrier | None = None  # held only while it holds bytes
        self.ended = False  # the source's end of stream was passed on

    @property
    def pending(self) -> int:
        return 0 if self.carrier is None else self.carrier.pending

    @property
    def wants_read(self) -> bool:
        return not self.ended and self.pending == 0

    @property
    def wants_write(self) -> bool:
        return self.pending > 0


class _Pair:
    __slots__ = ("a", "b", "flows", "group", "masks")

    def __init__(self, a: socket.socket, b: socket.socket, group: Hashable, splice: bool) -> None:
        self.a, self.b, self.group = a, b, group
        self.flows = (_Flow(a, b, splice), _Flow(b, a, splice))
        self.masks = {a.fileno(): 0, b.fileno(): 0}  # what the selector watches per socket

    @property
    def done(self) -> bool:
        return all(f.ended for f in self.flows)


class Relay:
    """One thread relaying every pair added to it, until ``stop``.

    ``add`` and ``close_group`` may be called from any thread (an event loop's): they
    queue a command and wake the thread. After ``add`` the relay owns both sockets.
    """

    def __init__(self, name: str = "relay", *, splice: bool | None = None) -> None:
        self.name = name
        self.splicing = splice_available() if splice is None else splice
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._pairs: dict[int, _Pair] = {}  # by both sockets' fds
        self._groups: dict[Hashable, set[_Pair]] = {}
        self._pipes: list[_Pipe] = []
        self._buffers: list[_Buffer] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self.wakeups = 0  # selector returns with work (for benches: bytes per wake-up)
        self.reads = 0
        self.moved = 0  # bytes read from a source

    # ---- from any thread -----------------------------------------------------------

    def start(self) -> None:
        """Start the thread (a daemon: it never keeps a process alive)."""
        if self._thread is None:
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def add(self, a: socket.socket, b: socket.socket, group: Hashable = None) -> None:
        """Relay ``a`` and ``b`` into each other; ``close_group(group)`` ends them early."""
        for sock in (a, b):
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # not TCP (a test's socketpair)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # shells
        self._command(lambda: self._add(a, b, group))

    def close_group(self, group: Hashable) -> None:
        """Close every pair of ``group`` (a job ended): both sockets of each."""
        self._command(lambda: self._close_group(group))

    def count(self, group: Hashable = None) -> int:
        """Pairs being relayed, of ``group`` or (``None``) in all (for tests and metrics)."""
        if group is None:
            return len(self._pairs) // 2
        return len(self._groups.get(group, ()))

    def stop(self) -> None:
        """Close every pair and end the thread; idempotent."""
        if self._closed:
            return
        self._stopping = True
        self._wake()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        while self._commands:  # added after the thread ended: _add closes them
            self._commands.popleft()()
        self._close_all()
        self._closed = True
        if self.moved:
            logger.info(
                "%s: %d bytes relayed in %d reads, %d wake-ups",
                self.name, self.moved, self.reads, self.wakeups,
            )  # fmt: skip
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _command(self, command: Callable[[], None]) -> None:
        if self._closed:  # stopped: _add closes the sockets, nothing else is left to do
            command()
            return
        self._commands.append(command)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
            self._wake_w.send(b"\0")

    # ---- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                ready = self._selector.select()
                self.wakeups += 1
                moved = self.moved
                for key, events in ready:
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._ready(key.fd, events)
                if self.moved - moved >= BULK:
                    # A bulk copy: let more arrive before the next round, so each wake-up
                    # moves more; typed keys (less than BULK) never wait.
                    time.sleep(COALESCE)
        except Exception:  # a bug here must not pass silently: every pair would hang
            logger.exception("%s: relay thread failed; closing its connections", self.name)
        finally:
            self._close_all()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while self._commands:
            self._commands.popleft()()

    def _add(self, a: socket.socket, b: socket.socket, group: Hashable) -> None:
        if self._stopping:
            a.close()
            b.close()
            return
        pair = _Pair(a, b, group, self.splicing)
        self._pairs[a.fileno()] = self._pairs[b.fileno()] = pair
        self._groups.setdefault(group, set()).add(pair)
        self._watch(pair)

    def _close_group(self, group: Hashable) -> None:
        for pair in list(self._groups.get(group, ())):
            self._finish(pair, reset=False)

    def _ready(self, fd: int, events: int) -> None:
        pair = self._pairs.get(fd)
        if pair is None:
            return
        try:
            for flow in pair.flows:
                if events & selectors.EVENT_READ and flow.src.fileno() == fd and flow.wants_read:
                    self._move(flow)
                if events & selectors.EVENT_WRITE and flow.dst.fileno() == fd and flow.wants_write:
                    self._deliver(flow)
        except OSError as exc:
            # A reset, or a write to a socket whose peer is gone: the other peer hears
            # the same (a reset), rather than a clean end it would take as complete.
            logger.debug("%s: pair reset: %s", self.name, exc)
            self._finish(pair, reset=True)
            return
        except Exception:  # a bug: this pair ends, the others go on
            logger.exception("%s: relaying a pair failed; resetting it", self.name)
            self._finish(pair, reset=True)
            return
        if pair.done:
            self._finish(pair, reset=False)
        else:
            self._watch(pair)

    def _move(self, flow: _Flow) -> None:
        """Read from ``flow.src`` and pass it on, while both sides keep up."""
        for _ in range(ROUNDS):
            carrier = flow.carrier or self._take(flow)
            try:
                n = carrier.fill(flow.src)
            except BlockingIOError:
                n = -1
            except OSError as exc:
                if not (isinstance(carrier, _Pipe) and exc.errno in _NO_SPLICE):
                    raise
                logger.info("%s: splice refused (%s); copying in Python", self.name, exc)
                flow.splice = False
                self._give(flow)
                continue
            if n == 0:  # end of stream: pass it on once what came before is delivered
                self._give(flow)
                flow.ended = True
                with contextlib.suppress(OSError):  # the peer may have gone meanwhile
                    flow.dst.shutdown(socket.SHUT_WR)
                return
            if n < 0:
                self._give(flow)
                return
            self.reads += 1
            self.moved += n
            self._deliver(flow)
            if flow.pending:
                return  # the destination is full: wait until it is writable

    def _deliver(self, flow: _Flow) -> None:
        carrier = flow.carrier
        assert carrier is not None
        with contextlib.suppress(BlockingIOError):
            while carrier.pending:
                carrier.drain(flow.dst)
        if not carrier.pending:
            self._give(flow)

    def _take(self, flow: _Flow) -> _Carrier:
        carrier: _Carrier | None = None
        if flow.splice:
            try:
                carrier = self._pipes.pop() if self._pipes else _Pipe()
            except OSError as exc:  # out of descriptors: this round copies in Python
                logger.debug("%s: no pipe (%s); copying this round", self.name, exc)
        if carrier is None:
            carrier = self._buffers.pop() if self._buffers else _Buffer()
        flow.carrier = carrier
        return carrier

    def _give(self, flow: _Flow) -> None:
        """Return ``flow``'s carrier to its pool, or close it if it still holds bytes."""
        carrier, flow.carrier = flow.carrier, None
        if carrier is None:
            return
        if carrier.pending:  # a reset pair's undelivered bytes: not reusable
            carrier.close()
        elif isinstance(carrier, _Pipe) and len(self._pipes) < SPARE:
            self._pipes.append(carrier)
        elif isinstance(carrier, _Buffer) and len(self._buffers) < SPARE:
            self._buffers.append(carrier)
        else:
            carrier.close()

    def _watch(self, pair: _Pair) -> None:
        """Tell the selector what each socket of ``pair`` waits for now."""
        for sock in (pair.a, pair.b):
            mask = 0
            for flow in pair.flows:
                if flow.src is sock and flow.wants_read:
                    mask |= selectors.EVENT_READ
                if flow.dst is sock and flow.wants_write:
                    mask |= selectors.EVENT_WRITE
            fd = sock.fileno()
            old = pair.masks[fd]
            if mask == old:
                continue
            if not old:
                self._selector.register(fd, mask)
            elif not mask:
                self._selector.unregister(fd)
            else:
                self._selector.modify(fd, mask)
            pair.masks[fd] = mask

    def _finish(self, pair: _Pair, *, reset: bool) -> None:
        for fd, mask in pair.masks.items():
            if mask:
                self._selector.unregister(fd)
            self._pairs.pop(fd, None)
        members = self._groups.get(pair.group)
        if members is not None:
            members.discard(pair)
            if not members:
                del self._groups[pair.group]
        for flow in pair.flows:
            self._give(flow)
        for sock in (pair.a, pair.b):
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _close_all(self) -> None:
        for pair in list({id(p): p for p in self._pairs.values()}.values()):
            with contextlib.suppress(Exception):
                self._finish(pair, reset=False)
        for pipe in self._pipes:
            pipe.close()
        for buffer in self._buffers:
            buffer.close()
        self._pipes.clear()
        self._buffers.clear()
