"""systemd's notification protocol (sd_notify): READY, STATUS, STOPPING and the watchdog.

A service of ``Type=notify`` is started when it sends ``READY=1`` to the datagram socket
named in ``$NOTIFY_SOCKET``; with ``WatchdogSec=`` systemd also sets ``$WATCHDOG_USEC``
and restarts the service when no ``WATCHDOG=1`` arrives within that time. Each message
is one datagram of ``KEY=VALUE`` lines. Written here on a plain socket rather than with
a binding: four messages do not justify a dependency (docs/rack.md §the watchdog).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping
from typing import Final, NoReturn

import anyio
from anyio.abc import TaskStatus

logger = logging.getLogger(__name__)

FEED_FRACTION: Final = 3  # feed every third of the period: a busy board gets two more tries
LATE_WARNING: Final = 1.0  # seconds the event loop may be late before the log says so
STATUS_MAX: Final = 200  # characters of STATUS=; `systemctl status` shows one line


class Notifier:
    """Sends notifications to systemd; every method does nothing outside a notify unit.

    A failing send is logged once and never raised: telling systemd is a courtesy to
    the service manager, never a reason for the dryad itself to stop.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self.watchdog_period = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read systemd's variables and remove them, so that the processes the dryad
        starts (useradd, a job's commands) neither inherit nor misuse them."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        usec = _watchdog_usec(env)
        for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """One datagram of ``KEY=value`` lines; True if it was sent."""
        if self._address is None:
            return False
        message = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("cannot notify systemd at %r: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        if status:
            return self.send(READY="1", STATUS=_line(status))
        return self.send(READY="1")

    def status(self, text: str) -> bool:
        return self.send(STATUS=_line(text))

    def stopping(self) -> bool:
        return self.send(STOPPING="1", STATUS="stopping")

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def feed(
        self,
        alive: Callable[[], bool] = lambda: True,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Send ``WATCHDOG=1`` every third of the period while ``alive()`` holds.

        This runs as a task of the dryad's event loop, beside the link and the agent,
        on purpose: when the loop hangs (a blocking call, a busy loop) no task runs and
        no ping goes out, so systemd restarts the dryad. A thread would keep feeding
        a dead loop. ``alive`` says the work itself still goes on (the link's loop).
        """
        task_status.started()
        period = self.watchdog_period
        while period is None:  # no watchdog asked for: nothing to feed
            await anyio.sleep_forever()
        interval = period / FEED_FRACTION
        due = anyio.current_time()
        feeding = True
        while True:
            now = anyio.current_time()
            if now - due > LATE_WARNING:
                logger.warning("event loop was blocked for %.1f s (watchdog feed late)", now - due)
            working = alive()
            if working:
                self.watchdog()
            elif feeding:  # said once: systemd's restart follows within the period
                logger.error("the link loop has stopped; no longer feeding systemd's watchdog")
            feeding = working
            due = anyio.current_time() + interval
            await anyio.sleep(interval)


def _socket_address(address: str) -> str:
    # "@name" is Linux's abstract namespace, written with a leading NUL.
    return "\0" + address[1:] if address.startswith("@") else address


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """$WATCHDOG_USEC when it is meant for this process (``$WATCHDOG_PID``, if set)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _line(text: str) -> str:
    return " ".join(text.split())[:STATUS_MAX]
