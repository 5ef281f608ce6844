"""The HardwareError tree and the one place pyserial's exceptions become ours.

::

    HardwareError (Exception)
    ├── DeviceNotFound (+ FileNotFoundError)   a device node or GPIO chip is missing
    ├── DevicePermission (+ PermissionError)   the node exists but we may not open it
    ├── PortInUse (+ RuntimeError)             another process holds the serial port
    ├── PortLost (+ ConnectionError)           the port went away while open
    ├── StmTimeout (+ TimeoutError)            the STM did not finish a reply in time
    ├── StmProtocolError (+ ValueError)        a reply we cannot parse (garbage, half lines)
    ├── StmCommandFailed (+ RuntimeError)      the firmware said "Error processing command"
    │   └── StmUnknownCommand                  the firmware said "Unknown command"
    ├── StmUnsupported (+ NotImplementedError) the firmware lacks a command (capability check)
    ├── BadArgument (+ ValueError)             refused before sending: out of range, too long
    ├── BadConfig (+ ValueError)               a board setting is wrong; the message names its key
    ├── CommandFailed (+ RuntimeError)         a power command exited non-zero or timed out
    └── UnknownProfile (+ LookupError)         no board profile by that name
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import serial


class HardwareError(Exception):
    """Root of every error raised by the hardware package."""


class DeviceNotFound(HardwareError, FileNotFoundError):
    """A device node (serial port, GPIO chip, I2C bus) does not exist."""


class DevicePermission(HardwareError, PermissionError):
    """A device node exists but this user may not open it."""


class PortInUse(HardwareError, RuntimeError):
    """Another process holds the exclusive lock on the serial port."""


class PortLost(HardwareError, ConnectionError):
    """The serial port failed while open (unplugged, hung up, I/O error)."""


class StmTimeout(HardwareError, TimeoutError):
    """The STM did not finish its reply within the timeout."""


class StmProtocolError(HardwareError, ValueError):
    """The STM's reply cannot be parsed: garbage bytes or an unexpected shape."""


class StmCommandFailed(HardwareError, RuntimeError):
    """The firmware answered ``Error processing command``."""


class StmUnknownCommand(StmCommandFailed):
    """The firmware answered ``Unknown command``."""


class StmUnsupported(HardwareError, NotImplementedError):
    """The firmware on this board does not offer the command (see ``help``)."""


class BadArgument(HardwareError, ValueError):
    """An argument was refused before anything was sent to the hardware."""


class BadConfig(HardwareError, ValueError):
    """A board setting is wrong or names hardware that is not there.

    The message starts with the setting's key (``generic.power.pin: ...``), so the
    operator knows which line of the configuration to fix.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class CommandFailed(HardwareError, RuntimeError):
    """A configured command (a generic board's power switch) failed or timed out."""


class UnknownProfile(HardwareError, LookupError):
    """No board profile is registered under the requested name."""


@contextmanager
def map_serial_errors(port: str) -> Iterator[None]:
    """Translate pyserial and OS errors raised while using *port* into HardwareErrors.

    :param port: the device path, named in every message so the operator knows what to check.
    """
    try:
        yield
    except HardwareError:
        raise
    except serial.SerialException as exc:
        raise _from_serial(port, exc) from exc
    except OSError as exc:
        raise _from_os(port, exc) from exc


def _from_serial(port: str, exc: serial.SerialException) -> HardwareError:
    # pyserial wraps open() failures in SerialException but keeps errno on it.
    code = getattr(exc, "errno", None)
    if code is not None:
        return _from_os(port, OSError(code, str(exc)))
    return PortLost(f"STM serial port {port} failed: {exc}; check the cable and the device")


def _from_os(port: str, exc: OSError) -> HardwareError:
    if exc.errno == errno.ENOENT:
        return DeviceNotFound(
            f"STM serial port {port} does not exist; check the device path in the "
            "configuration and that the UART is enabled in the device tree"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DevicePermission(
            f"STM serial port {port} is not accessible; add this user to the group "
            "that owns it (usually dialout)"
        )
    if exc.errno in (errno.EBUSY, errno.EWOULDBLOCK):
        return PortInUse(
            f"STM serial port {port} is held by another process; "
            "stop the other owner (stm service, minicom, a second dryad) and retry"
        )
    return PortLost(f"STM serial port {port} failed: {exc}; check the cable and the STM power")
