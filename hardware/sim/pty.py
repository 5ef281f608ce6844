"""Serve the simulated firmware on a real pty, with faults on demand."""

from __future__ import annotations

import json
import logging
import os
import tty
from pathlib import Path
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from hardware.files import atomic_write
from hardware.sim.firmware import INPUT_QUEUE, Firmware

logger = logging.getLogger(__name__)

GARBAGE = b"\x00\xff\xfe#\x1b[0m"


class PtyStm:
    """A simulated STM reachable at :attr:`path`, run inside ``async with``.

    :param firmware: the firmware model; a fresh published-firmware model by default.
    :param baud: pace the output like a UART at this rate (None: as fast as the pty).
    :param link: a symlink kept pointing at the current pty, so a client can reopen
        the same path after :meth:`drop` (like a USB serial adapter coming back).
    :param state_file: rewrite the board state as JSON here after every change.
    :param png_file: rewrite the OLED as a PNG here after every change of the panel.
    """

    def __init__(
        self,
        firmware: Firmware | None = None,
        *,
        baud: int | None = None,
        link: Path | None = None,
        state_file: Path | None = None,
        png_file: Path | None = None,
    ) -> None:
        self.firmware = firmware or Firmware()
        self.baud = baud
        self.muted = False
        self._link = link
        self._state_file = state_file
        self._png_file = png_file
        self._last_state = ""
        self._last_panel = b""
        self._garble_next = False
        self._half_next = False
        self._press_after: tuple[int, int] | None = None
        self._master = -1
        self._slave = -1
        self._slave_path = ""
        self._tg: TaskGroup | None = None
        self._serving = anyio.CancelScope()
        self.changed = anyio.Event()

    @property
    def path(self) -> str:
        """The device path a client should open."""
        return str(self._link) if self._link else self._slave_path

    async def __aenter__(self) -> PtyStm:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._open()
        self._publish()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(et, e, tb)
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def _open(self) -> None:
        if self._tg is None:
            raise RuntimeError("PtyStm runs inside 'async with'")
        self._master, self._slave = os.openpty()
        # Raw mode at once: a cooked slave would echo our own output back to us
        # before a client has opened the port and set its own termios.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._slave_path = os.ttyname(self._slave)
        if self._link is not None:
            tmp = self._link.with_name(self._link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self._slave_path)
            tmp.replace(self._link)
        self._serving = anyio.CancelScope()
        self._tg.start_soon(self._serve, self._master, self._slave, self._serving)
        logger.info("simulated STM on %s", self.path)

    # Faults -------------------------------------------------------------------------

    def mute(self, muted: bool = True) -> None:
        """Stop answering (a hung firmware): input is swallowed, nothing is sent."""
        self.muted = muted

    def garble_next_reply(self) -> None:
        """Put a line of binary garbage before the next terminator."""
        self._garble_next = True

    def half_next_reply(self) -> None:
        """Send only the first half of the next output, then hang."""
        self._half_next = True

    def press_during_next_command(self, key: int, after: int) -> None:
        """Print ``pressed: key`` after *after* bytes of the next input are echoed."""
        self._press_after = (key, after)

    async def press(self, key: int) -> None:
        """A button press now, between lines."""
        await self._send(self.firmware.press(key))

    def reboot(self) -> None:
        """Reset the firmware: it boots in ``ts`` and shows its splash on the OLED.

        The real firmware prints nothing on the UART while it boots (firmware.c,
        tasks.c), so neither does the model.
        """
        self.firmware.boot()
        self.muted = False
        self._publish()

    def drop(self) -> None:
        """Tear the pty down (a lost port), then offer a new one at :attr:`path`."""
        # The old serving task closes the old pty when it sees the cancellation.
        self._serving.cancel()
        self._open()

    # Serving ------------------------------------------------------------------------

    async def _serve(self, master: int, slave: int, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                while True:
                    await anyio.wait_readable(master)
                    data = os.read(master, 4096)
                    if self.muted:
                        logger.debug("muted STM swallowed %r", data)
                        continue
                    await self._feed(data)
                    self._publish()
        finally:
            os.close(master)
            os.close(slave)

    async def _feed(self, data: bytes) -> None:
        if self._press_after is not None:
            key, after = self._press_after
            self._press_after = None
            head, data = data[:after], data[after:]
            await self._feed(head)
            await self.press(key)
        while data:
            out, pause, data = self.firmware.receive(data)
            await self._send(out)
            if pause:
                self._publish()
                await anyio.sleep(pause)
                # The command task was blocked; the ISR queued what it could.
                data = (data + self._read_available())[:INPUT_QUEUE]
                await self._send(self.firmware.resume())

    def _read_available(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""

    async def _send(self, data: bytes) -> None:
        if not data or self.muted:
            return
        if self._garble_next and data.endswith(b"\r\n"):
            self._garble_next = False
            cut = data.rfind(b"\n", 0, len(data) - 1) + 1  # before the terminator line
            data = data[:cut] + GARBAGE + b"\r\n" + data[cut:]
        if self._half_next:
            self._half_next = False
            data = data[: len(data) // 2]
            self.muted = True
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await anyio.wait_writable(self._master)
                continue
            view = view[written:]
        if self.baud:
            # 8N1: ten bit times per byte on the wire.
            await anyio.sleep(len(data) * 10 / self.baud)

    def _publish(self) -> None:
        snapshot = self.firmware.snapshot()
        text = json.dumps(snapshot, sort_keys=True)
        if text == self._last_state:
            return
        self._last_state = text
        if self._state_file is not None:
            atomic_write(self._state_file, (text + "\n").encode(), 0o644)
        if self._png_file is not None and bytes(self.firmware.panel.pages) != self._last_panel:
            self._last_panel = bytes(self.firmware.panel.pages)
            atomic_write(self._png_file, self.firmware.panel.save_png, 0o644)
        self.changed.set()
        self.changed = anyio.Event()
