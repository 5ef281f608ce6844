"""SD switches: the GPIO line, the simulated USB-SD-Mux, and usbsdmux's errors mapped."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadConfig, DeviceNotFound, DevicePermission, HardwareError, PortLost
from hardware.generic import sdmux
from hardware.generic.config import GpioSdSettings, UsbSdMuxSettings
from hardware.generic.sdmux import GpioSdSwitch, MuxDevice, UsbSdMuxSwitch
from hardware.stm.protocol import Mux

pytestmark = pytest.mark.anyio


async def test_a_gpio_switch_starts_at_the_host_and_uses_the_dut_level(
    factory: MockFactory,
) -> None:
    sd = GpioSdSwitch(GpioSdSettings("GPIO27", dut_high=False), factory)
    assert await sd.where() is Mux.TS and factory.pin(27).state is True
    await sd.to_dut()
    assert await sd.where() is Mux.DUT and factory.pin(27).state is False
    await sd.aclose()


async def test_the_simulated_mux_is_a_file_that_starts_at_the_host(tmp_path: Path) -> None:
    device = tmp_path / "id-0001"
    sd = await UsbSdMuxSwitch.open(UsbSdMuxSettings(device), simulate=True)
    assert await sd.where() is Mux.TS
    await sd.to_dut()
    assert device.read_text() == "dut\n" and await sd.where() is Mux.DUT
    device.write_text("off\n")  # neither side, as usbsdmux's "off"
    assert await sd.where() is Mux.INVALID


@pytest.mark.parametrize("simulate", [True, False])
async def test_a_missing_mux_names_its_key(tmp_path: Path, simulate: bool) -> None:
    missing = UsbSdMuxSettings(tmp_path / "unplugged" / "id-0001")
    with pytest.raises(DeviceNotFound, match=r"^generic\.sd\.device: .*unplugged/id-0001"):
        await UsbSdMuxSwitch.open(missing, simulate=simulate)


async def test_a_file_that_is_no_mux_is_refused_by_usbsdmux_itself(tmp_path: Path) -> None:
    not_a_mux = tmp_path / "sg0"
    not_a_mux.write_text("")
    with pytest.raises(BadConfig, match=r"^generic\.sd\.device: .*sg0: Could not determine type"):
        await UsbSdMuxSwitch.open(UsbSdMuxSettings(not_a_mux), simulate=False)


class Failing:
    """A usbsdmux driver whose every call raises one foreign error."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get_mode(self) -> str:
        raise self.error or RuntimeError

    def mode_DUT(self) -> None:
        raise self.error or RuntimeError

    def mode_host(self) -> None:
        raise self.error or RuntimeError


class UnknownUsbSdMuxRevisionException(Exception):
    __module__ = "usbsdmux.usbsdmux"


FOREIGN = [
    (FileNotFoundError(errno.ENOENT, "No such file"), DeviceNotFound),
    (PermissionError(errno.EACCES, "Permission denied"), DevicePermission),
    (OSError(errno.ENOTTY, "Inappropriate ioctl for device"), BadConfig),
    (OSError(errno.EIO, "Input/output error"), PortLost),
    (UnknownUsbSdMuxRevisionException("unknown SCSI model"), BadConfig),
]


@pytest.mark.parametrize(("foreign", "ours"), FOREIGN)
async def test_every_foreign_error_of_the_mux_is_ours_and_names_the_key(
    tmp_path: Path, foreign: Exception, ours: type[HardwareError]
) -> None:
    tmp_path.joinpath("sg").write_text("")

    def driver(path: Path) -> MuxDevice:
        return Failing(foreign)

    with pytest.raises(ours, match=r"^generic\.sd\.device: ") as caught:
        await UsbSdMuxSwitch.open(UsbSdMuxSettings(tmp_path / "sg"), simulate=False, driver=driver)
    assert caught.value.__cause__ is foreign


async def test_a_bug_in_the_driver_is_not_disguised(tmp_path: Path) -> None:
    tmp_path.joinpath("sg").write_text("")
    with pytest.raises(ZeroDivisionError):
        await UsbSdMuxSwitch.open(
            UsbSdMuxSettings(tmp_path / "sg"),
            simulate=False,
            driver=lambda path: Failing(ZeroDivisionError()),
        )


async def test_a_hung_mux_is_a_clear_error_not_a_hung_dryad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    class Hung(Failing):
        def get_mode(self) -> str:
            release.wait(10)
            return "host"

    tmp_path.joinpath("sg").write_text("")
    monkeypatch.setattr(sdmux, "MUX_TIMEOUT", 0.05)
    with pytest.raises(PortLost, match=r"^generic\.sd\.device: .* did not answer within 0.05 s"):
        await UsbSdMuxSwitch.open(
            UsbSdMuxSettings(tmp_path / "sg"), simulate=False, driver=lambda path: Hung(None)
        )
    release.set()
