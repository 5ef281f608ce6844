"""The order the link dials its coordinators in: every address of every configured entry,
round-robin from the one that last worked (docs/failover.md §the redial order)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from dryad.addresses import Address

# The IP addresses a name resolves to for a port, in the resolver's order.
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Target:
    """One dialable coordinator: the configured entry and the IP address dialled."""

    address: Address
    ip: str

    def __str__(self) -> str:
        if self.address.literal:
            return str(self.address)
        return f"{self.address} ({self.ip})"


async def resolve(host: str, port: int) -> list[str]:
    """Every A and AAAA record of ``host``, each once; raises ``OSError`` if none."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not found:
        raise OSError(f"{host} has no address")
    return found


def home_position(seed: str, count: int) -> int:
    """Where the rounds of a dryad identified by ``seed`` start until a link served: the
    same for this dryad on every start, and spread evenly over ``count`` targets by
    dryads with different seeds (docs/failover.md §the redial order)."""
    if count <= 0:
        return 0
    # Not hash(): Python randomises it for each process, and the place must survive a restart.
    digest = hashlib.sha256(seed.encode(errors="surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


class Rotation:
    """Hands out rounds of targets: each round tries every target once.

    A round starts at the target that last served a link (until one did, at the target
    ``seed`` picks, so that dryads given the same list spread over the coordinators);
    after that target's link ended, the next round starts just after it, so a dropped
    link is followed by the next coordinator, and the one that dropped is tried last.
    Names are resolved afresh for every round, as their records may change.
    """

    def __init__(
        self, configured: Sequence[Address], resolver: Resolver = resolve, seed: str = ""
    ) -> None:
        self._configured = tuple(configured)
        self._resolve = resolver
        self._seed = seed
        self._last: Target | None = None
        self._skip_last = False

    async def round(self, unresolved: Callable[[Address, OSError], None]) -> list[Target]:
        """The targets of the next round, in dialling order; ``unresolved`` hears of each
        name that did not resolve (it is left out of this round)."""
        targets: list[Target] = []
        for address in self._configured:
            if address.literal:
                targets.append(Target(address, address.host))
                continue
            try:
                ips = await self._resolve(address.host, address.port)
            except OSError as exc:
                unresolved(address, exc)
                continue
            targets.extend(Target(address, ip) for ip in ips)
        start = self._start(targets)
        if self._skip_last and targets:
            start = (start + 1) % len(targets)
        self._skip_last = False
        return targets[start:] + targets[:start]

    def served(self, target: Target) -> None:
        """``target`` served a link that has now ended: the next round starts after it."""
        self._last = target
        self._skip_last = True

    def _start(self, targets: list[Target]) -> int:
        last = self._last
        if last is None:
            return home_position(self._seed, len(targets))
        if last in targets:
            return targets.index(last)
        # Its name no longer lists that address: start at the name's first one.
        for i, target in enumerate(targets):
            if target.address == last.address:
                return i
        return 0
