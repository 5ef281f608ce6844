"""The SD card switch of a generic board: a GPIO line, or a USB-SD-Mux.

This module is the only one that imports ``usbsdmux`` (and only when a board has
one); its errors become ours in :func:`_mux_errors`. Both switches start with the
card at the host, as ``stm -ts`` leaves it (docs/generic-board.md §sd card).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import anyio

from hardware.errors import BadConfig, DeviceNotFound, DevicePermission, PortLost
from hardware.generic.config import GpioSdSettings, UsbSdMuxSettings
from hardware.generic.lines import open_pin
from hardware.stm.protocol import Mux

logger = logging.getLogger(__name__)

T = TypeVar("T")
MUX_TIMEOUT: Final = 10.0  # seconds; a switch takes well under one (the card's supply drains)
# usbsdmux's words for where the card is; "off" is neither side.
_MODES: Final = {"host": Mux.TS, "dut": Mux.DUT, "off": Mux.INVALID}


class SdSwitch(Protocol):
    """Gives the SD card to the host's reader (``Mux.TS``) or to the DUT."""

    async def where(self) -> Mux: ...
    async def to_host(self) -> None: ...
    async def to_dut(self) -> None: ...
    async def aclose(self) -> None: ...


class GpioSdSwitch:
    """A switch chip (or relay) on one GPIO line; ``dut_high`` says which level is the DUT."""

    def __init__(self, settings: GpioSdSettings, factory: Any, key: str = "generic.sd.pin"):
        from gpiozero import OutputDevice

        self._line = open_pin(
            key,
            settings.pin,
            lambda: OutputDevice(
                settings.pin,
                active_high=settings.dut_high,
                initial_value=False,  # the card starts at the host
                pin_factory=factory,
            ),
        )

    async def where(self) -> Mux:
        return Mux.DUT if self._line.value else Mux.TS

    async def to_host(self) -> None:
        self._line.off()

    async def to_dut(self) -> None:
        self._line.on()

    async def aclose(self) -> None:
        self._line.close()

    def __str__(self) -> str:
        return f"switch on {self._line.pin}"


class MuxDevice(Protocol):
    """What we use of ``usbsdmux``'s driver objects (blocking calls)."""

    def get_mode(self) -> str: ...
    def mode_DUT(self) -> None: ...
    def mode_host(self) -> None: ...


class FileMux:
    """The simulator: a USB-SD-Mux whose "device" is a file holding ``host``/``dut``/``off``.

    Like a device node, it exists only where its directory does; it starts at ``host``.
    """

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such device", str(path))
        self.path = path
        if not path.exists():
            path.write_text("host\n")

    def get_mode(self) -> str:
        return self.path.read_text().strip()

    def mode_DUT(self) -> None:
        self.path.write_text("dut\n")

    def mode_host(self) -> None:
        self.path.write_text("host\n")


def real_mux(path: Path) -> MuxDevice:
    """usbsdmux's driver for the device at *path* (it reads the model from sysfs)."""
    from usbsdmux.usbsdmux import autoselect_driver

    device: MuxDevice = autoselect_driver(str(path))
    return device


class UsbSdMuxSwitch:
    """A USB-SD-Mux (Linux Automation) through the ``usbsdmux`` package.

    Use :meth:`open`: it checks that the device answers before the dryad relies on it.
    The driver's calls block (SCSI ioctls, and a wait while the card's supply drains),
    so they run in a worker thread.
    """

    def __init__(self, device: MuxDevice, path: Path, key: str) -> None:
        self._device = device
        self._path = path
        self._key = key

    @classmethod
    async def open(
        cls,
        settings: UsbSdMuxSettings,
        *,
        simulate: bool,
        key: str = "generic.sd.device",
        driver: Callable[[Path], MuxDevice] = real_mux,
    ) -> UsbSdMuxSwitch:
        """Reach the mux at ``settings.device``, read its mode, and give the card to the host.

        :param simulate: use a :class:`FileMux` at that path instead of the real device.
        :raises DeviceNotFound, DevicePermission, BadConfig: naming *key*.
        """
        path = settings.device
        if not simulate and not path.exists():
            raise DeviceNotFound(
                f"{key}: {path} does not exist; is the USB-SD-Mux plugged in, and "
                "usbsdmux's udev rule installed (it makes /dev/usb-sd-mux/id-*)?"
            )
        make = FileMux if simulate else driver
        with _mux_errors(key, path):
            device = await anyio.to_thread.run_sync(make, path)
        switch = cls(device, path, key)
        await switch.where()  # a device that does not answer stops the dryad here
        await switch.to_host()
        return switch

    async def _call(self, call: Callable[[], T]) -> T:
        try:
            with anyio.fail_after(MUX_TIMEOUT), _mux_errors(self._key, self._path):
                # A hung USB device must not hang the dryad: its thread is left behind.
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except TimeoutError as exc:
            raise PortLost(
                f"{self._key}: the USB-SD-Mux at {self._path} did not answer within "
                f"{MUX_TIMEOUT:g} s; unplug and replug it"
            ) from exc

    async def where(self) -> Mux:
        mode = await self._call(self._device.get_mode)
        return _MODES.get(mode, Mux.INVALID)

    async def to_host(self) -> None:
        await self._call(self._device.mode_host)

    async def to_dut(self) -> None:
        await self._call(self._device.mode_DUT)

    async def aclose(self) -> None:
        """The device is opened for each call; nothing is held."""

    def __str__(self) -> str:
        return f"USB-SD-Mux {self._path}"


@contextmanager
def _mux_errors(key: str, path: Path) -> Iterator[None]:
    """Translate usbsdmux's and the OS's errors about the mux at *path* into ours."""
    try:
        yield
    except FileNotFoundError as exc:
        raise DeviceNotFound(f"{key}: {path} does not exist ({exc}); is it plugged in?") from exc
    except PermissionError as exc:
        raise DevicePermission(
            f"{key}: {path} is not accessible ({exc}); run the dryad as root or add a "
            "udev rule giving its group the device"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOTTY:  # the ioctl was refused: not a mux
            raise BadConfig(key, f"{path} does not look like a USB-SD-Mux ({exc})") from exc
        raise PortLost(f"{key}: the USB-SD-Mux at {path} failed: {exc}") from exc
    except Exception as exc:
        # usbsdmux's own errors (an unknown revision, ...) derive from Exception only.
        if type(exc).__module__.startswith("usbsdmux"):
            raise BadConfig(key, f"{path}: {exc}") from exc
        raise
