"""Every foreign error from pyserial and the OS becomes a named HardwareError."""

from __future__ import annotations

import errno

import pytest
import serial

from hardware.errors import (
    DeviceNotFound,
    DevicePermission,
    HardwareError,
    PortInUse,
    PortLost,
    map_serial_errors,
)
from hardware.pins import GpiodFactory

FOREIGN = [
    (serial.SerialException(errno.ENOENT, "could not open port"), DeviceNotFound),
    (serial.SerialException(errno.EACCES, "could not open port"), DevicePermission),
    (serial.SerialException(errno.EWOULDBLOCK, "Could not exclusively lock"), PortInUse),
    (serial.SerialException("device reports readiness but returned no data"), PortLost),
    (OSError(errno.EIO, "Input/output error"), PortLost),
    (PermissionError(errno.EPERM, "Operation not permitted"), DevicePermission),
    (OSError(errno.EBUSY, "busy"), PortInUse),
]


@pytest.mark.parametrize(("foreign", "ours"), FOREIGN)
def test_foreign_errors_are_mapped_and_name_the_port(
    foreign: Exception, ours: type[HardwareError]
) -> None:
    with pytest.raises(ours, match="/dev/ttyS2") as caught, map_serial_errors("/dev/ttyS2"):
        raise foreign
    assert caught.value.__cause__ is foreign


def test_our_errors_pass_through_unchanged() -> None:
    error = PortLost("already ours")
    with pytest.raises(PortLost) as caught, map_serial_errors("/dev/ttyS2"):
        raise error
    assert caught.value is error


def test_errors_are_also_the_builtins_they_resemble() -> None:
    assert issubclass(DeviceNotFound, FileNotFoundError)
    assert issubclass(PortInUse, RuntimeError)


def test_gpiod_factory_builds_the_board_table_without_touching_hardware() -> None:
    factory = GpiodFactory()
    assert factory.ticks_diff(5.0, 2.0) == 3.0 and factory.ticks() > 0
    assert {"PWR_CTRL", "STM_BOOT0"} <= {
        name for pin in factory.board_info.headers["J1"].pins.values() for name in pin.names
    }
