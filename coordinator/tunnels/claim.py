"""A serving coordinator's claim of its tunnel port range on this host, held while it serves."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from coordinator.errors import TunnelUnavailable

logger = logging.getLogger(__name__)

# Abstract Unix socket names (docs/failover.md §tunnel range claim): no file, they live in
# the network namespace as TCP ports do, and go with the last descriptor, so a SIGKILLed
# holder's claim goes with it.
PREFIX: Final = "boruta-coordinator/tunnel-ports/"
MUTEX: Final = "boruta-coordinator/tunnel-ports.lock"
TABLE: Final = Path("/proc/net/unix")  # every Unix socket of this network namespace
MUTEX_WAIT: Final = 5.0  # seconds to wait for the mutex (a claimer holds it for microseconds)
MUTEX_POLL: Final = 0.005
RETRY: Final = 0.2  # seconds between tries while waiting for another claim to go


@dataclass(frozen=True)
class Claimed:
    """A claim as its socket's name says: ports ``first``..``last`` on ``bind``, by ``pid``."""

    first: int
    last: int
    bind: str  # an address as ``address`` normalises it
    pid: int

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.first}-{self.last}/{self.bind}/{self.pid}"

    @classmethod
    def parse(cls, name: str) -> Claimed | None:
        """The claim ``name`` says, or None for any other (or garbled) name."""
        if not name.startswith(PREFIX):
            return None
        ports, _, rest = name[len(PREFIX) :].partition("/")
        bind, _, pid = rest.rpartition("/")
        first, _, last = ports.partition("-")
        if not (first.isdigit() and last.isdigit() and pid.isdigit() and bind):
            return None
        return cls(int(first), int(last), bind, int(pid))

    def collides(self, other: Claimed) -> bool:
        """Whether the two could take each other's ports: the ranges overlap, and one
        address is the other or a wildcard that covers it."""
        if self.first > other.last or other.first > self.last:
            return False
        a, b = self.bind, other.bind
        if a == b or "::" in (a, b):  # "::" is bound dual-stack (tunnels.ports)
            return True
        if "0.0.0.0" in (a, b):
            return ":" not in (b if a == "0.0.0.0" else a)  # IPv4 only
        return False

    def __str__(self) -> str:
        return f"{self.first}-{self.last} (on {self.bind})"


def address(bind: str) -> str:
    """``bind`` as one spelling of the address the tunnels bind: an IP literal (an
    IPv4-mapped IPv6 one as IPv4), or a name resolved as the bind resolves it."""
    text = bind.strip("[]") or "0.0.0.0"
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        try:  # a name: the tunnels bind it as IPv4 (tunnels.ports)
            return socket.gethostbyname(text)
        except OSError:
            return text.lower()  # the bind will fail on it anyway, with its own error
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class Claim:
    """A held claim: its abstract socket; ``close`` (or the process's end) releases it."""

    def __init__(self, mine: Claimed, sock: socket.socket | None) -> None:
        self.mine = mine
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def claim(
    ports: range,
    bind: str,
    wait: float = 0.0,
    *,
    table: Path = TABLE,
    mutex_wait: float = MUTEX_WAIT,
) -> Claim:
    """Claim ``ports`` on ``bind`` for this process, for as long as the claim is open.

    :param wait: seconds to wait for a colliding claim to go (a coordinator of the same
        farm that is stepping down after a takeover); 0 refuses at once.
    :raises TunnelUnavailable: when another claim on this host collides (naming both
        ranges and the other's pid), or the check cannot be made in time.
    """
    mine = Claimed(ports.start, ports.stop - 1, address(bind), os.getpid())
    deadline = time.monotonic() + wait
    said = False
    while True:
        other, sock = _try(mine, table, mutex_wait)
        if sock is not None or other is None:
            return Claim(mine, sock)
        message = (
            f"tunnel_ports {mine} overlap {other} of another coordinator on this host "
            f"(pid {other.pid}): give each coordinator its own range"
        )
        if time.monotonic() >= deadline:
            raise TunnelUnavailable(message)
        if not said:
            logger.warning("%s; waiting up to %.0f s for it to stop serving", message, wait)
            said = True
        time.sleep(RETRY)


def _try(
    mine: Claimed, table: Path, mutex_wait: float
) -> tuple[Claimed | None, socket.socket | None]:
    """Under the mutex: the first colliding claim, else our claim's socket bound.

    Without a table to read (no /proc) nothing can be checked: that is logged, and the
    claim is still bound, for the coordinators that can read theirs.
    """
    with _mutex(mutex_wait):
        try:
            names = _names(table)
        except OSError as exc:
            logger.warning(
                "tunnel_ports %s not checked against other coordinators on this host: %s",
                mine, exc,
            )  # fmt: skip
            names = []
        for name in names:
            other = Claimed.parse(name)
            if other is not None and other.collides(mine):
                return other, None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind("\0" + mine.name)
        except OSError as exc:  # EADDRINUSE: the very same claim, from another pid namespace
            sock.close()
            raise TunnelUnavailable(f"tunnel_ports {mine} not claimed: {exc}") from exc
        return None, sock


@contextmanager
def _mutex(wait: float) -> Iterator[None]:
    """The short-lived lock that makes a claimer's check and bind one step."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        deadline = time.monotonic() + wait
        while True:
            try:
                sock.bind("\0" + MUTEX)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise TunnelUnavailable(f"tunnel_ports not claimed: {exc}") from exc
            if time.monotonic() >= deadline:
                raise TunnelUnavailable(
                    f"tunnel_ports not claimed: another process on this host held "
                    f"@{MUTEX} for over {wait:g} s"
                )
            time.sleep(MUTEX_POLL)
        yield


def _names(table: Path) -> list[str]:
    """The abstract names in ``table`` (``/proc/net/unix`` shows them with a leading @)."""
    names = []
    with table.open(encoding="utf-8", errors="replace") as lines:
        next(lines, None)  # the header
        for line in lines:
            fields = line.rstrip("\n").split(None, 7)
            if len(fields) == 8 and fields[7].startswith("@" + PREFIX):
                names.append(fields[7][1:])
    return names
