"""The serial line to the STM: exclusive port ownership, one reader, one command at a time."""

from __future__ import annotations

import fcntl
import logging
import os
from types import TracebackType

import anyio
import serial
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hardware.errors import HardwareError, PortLost, StmTimeout, map_serial_errors
from hardware.muxpi import STM_BAUD, STM_PORT
from hardware.stm import protocol
from hardware.stm.protocol import LineSplitter, Press, Reply

logger = logging.getLogger(__name__)

PRESS_BUFFER = 16


class StmLink:
    """Owns the STM's serial port and runs its commands strictly one after another.

    The port is opened with pyserial (termios, exclusive ``flock``) but read with
    ``anyio.wait_readable`` on its descriptor: no polling and no thread per read.
    One reader task sees every byte, so key presses reach subscribers whether or not
    a command is running.

    :param port: device path, ``/dev/ttyS2`` on a MuxPi.
    :param timeout: seconds a reply may take; blocking commands add their own time.
    """

    def __init__(self, port: str = STM_PORT, *, baud: int = STM_BAUD, timeout: float = 1.0):
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self._serial: serial.Serial | None = None
        self._reader: anyio.CancelScope | None = None
        self._lock = anyio.Lock()
        self._lines = LineSplitter()
        self._sink: MemoryObjectSendStream[str | HardwareError] | None = None
        self._subscribers: list[MemoryObjectSendStream[int]] = []
        self._tg: TaskGroup | None = None
        self.reopened = 0

    async def __aenter__(self) -> StmLink:
        port = self._connect()  # fail before any task exists
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._attach(port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
        if self._tg is not None:
            await self._tg.__aexit__(et, e, tb)
            self._tg = None

    async def aclose(self) -> None:
        """Stop reading and release the port; safe to call more than once."""
        self._close()
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    def presses(self) -> MemoryObjectReceiveStream[int]:
        """A stream of key numbers, one per ``pressed: N`` line; close it to unsubscribe.

        A subscriber that falls more than 16 presses behind loses the newest ones
        rather than stalling the reader.
        """
        send, receive = anyio.create_memory_object_stream[int](PRESS_BUFFER)
        self._subscribers.append(send)
        return receive

    async def command(self, command: str, *, within: float | None = None) -> list[str]:
        """Send *command*, wait for its terminator and return the value lines.

        :raises BadArgument: before sending, for a line the firmware would mangle.
        :raises StmTimeout: no terminator in time; the port is reopened to resync.
        :raises StmCommandFailed: the firmware refused the command.
        :raises StmProtocolError: the reply holds garbage.
        :raises PortLost, DeviceNotFound, PortInUse: the port itself failed.
        """
        data = protocol.encode(command)
        limit = self.timeout if within is None else within
        async with self._lock:
            if self._serial is None:
                self._open()
            reply = Reply(command)
            send, receive = anyio.create_memory_object_stream[str | HardwareError](256)
            self._sink = send
            try:
                # Once a command is written its reply will come; a caller cancelled in
                # between would leave that reply on the line for the next command to take
                # as its own. So the exchange finishes (within its limit) even then.
                with anyio.CancelScope(shield=True), anyio.fail_after(limit):
                    await self._write(data)
                    await self._collect(reply, receive)
            except TimeoutError:
                heard = [*reply.lines, self._lines.pending]
                self._resync()
                raise StmTimeout(
                    f"STM on {self.port} did not finish {command!r} within {limit:.1f} s "
                    f"(heard {[h for h in heard if h]!r}); check that the STM is powered "
                    "and running its firmware (muxpi-power on)"
                ) from None
            except PortLost:
                self._close()
                raise
            finally:
                self._sink = None
                send.close()
                receive.close()
        logger.debug("stm %r -> %r %s", command, reply.lines, reply.terminator)
        return protocol.check(reply)

    @staticmethod
    async def _collect(
        reply: Reply, receive: MemoryObjectReceiveStream[str | HardwareError]
    ) -> None:
        async for item in receive:
            if isinstance(item, HardwareError):
                raise item
            if protocol.collect(reply, item):
                return

    async def _write(self, data: bytes) -> None:
        fd = self._fd()
        view = memoryview(data)
        while view:
            try:
                with map_serial_errors(self.port):
                    written = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            view = view[written:]

    def _fd(self) -> int:
        if self._serial is None:
            raise PortLost(f"STM serial port {self.port} is closed")
        return int(self._serial.fileno())

    def _connect(self) -> serial.Serial:
        with map_serial_errors(self.port):
            return serial.Serial(self.port, self.baud, timeout=0, exclusive=True)

    def _open(self) -> None:
        self._attach(self._connect())

    def _attach(self, port: serial.Serial) -> None:
        if self._tg is None:
            port.close()
            raise PortLost(f"STM link to {self.port} is not running; use 'async with'")
        self._serial = port
        self._lines.clear()
        self._reader = anyio.CancelScope()
        self._tg.start_soon(self._read_port, port, self._reader)
        logger.info("STM port %s open", self.port)

    def _close(self) -> None:
        # The reader task closes the port itself once it has left wait_readable:
        # closing it here could let the number be reused under a pending wait.
        port, self._serial = self._serial, None
        if port is not None and port.is_open:
            fcntl.flock(port.fileno(), fcntl.LOCK_UN)  # so a reopen right now may lock again
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    def _resync(self) -> None:
        """Drop whatever is half-received by reopening the port (a hung or noisy line)."""
        self._close()
        try:
            self._open()
        except HardwareError as exc:
            logger.warning("STM port %s could not be reopened: %s", self.port, exc)
        else:
            self.reopened += 1

    def _lose(self, exc: BaseException) -> None:
        error = PortLost(f"STM serial port {self.port} was lost ({exc}); check the cable")
        logger.warning("%s", error)
        self._close()
        if self._sink is not None:
            self._sink.send_nowait(error)

    async def _read_port(self, port: serial.Serial, scope: anyio.CancelScope) -> None:
        fd = port.fileno()
        try:
            with scope:
                while True:
                    try:
                        await anyio.wait_readable(fd)
                        data = os.read(fd, 4096)
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # EIO: the other end hung up
                        self._lose(exc)
                        return
                    if not data:
                        self._lose(EOFError("end of file"))
                        return
                    for item in self._lines.feed(data):
                        self._dispatch(item)
        finally:
            port.close()

    def _dispatch(self, item: str | Press) -> None:
        if isinstance(item, Press):
            self._publish_press(item.key)
        elif self._sink is not None:
            try:
                self._sink.send_nowait(item)
            except anyio.WouldBlock:
                logger.warning("STM reply line dropped, over 256 lines: %r", item)
        elif item:
            logger.debug("unsolicited STM line %r", item)

    def _publish_press(self, key: int) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(key)
            except anyio.WouldBlock:
                logger.warning("key press %d dropped: subscriber is not reading", key)
            except anyio.BrokenResourceError:
                self._subscribers.remove(send)
                send.close()
