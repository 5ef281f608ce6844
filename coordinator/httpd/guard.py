"""Open HTTP connections, per client address and in all; over a limit, the oldest silent
one goes.

A well-behaved client sends its request as soon as it connects, so the connections that
have been open longest without sending a byte are the ones holding descriptors without
using them: a flood, or a scanner. Closing those first keeps room for everyone else. A
connection that has sent a request is never evicted: it is being served, or it waits
for its next request, and its own timeouts (keep-alive, send, in ``protocol``) bound
it; closing a kept-alive connection under a client that is just reusing it would fail a
well-behaved request. When no other silent connection is left, the newcomer is closed.
What was closed is counted and reported as one summary line per interval, never one
line per connection.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


class Connection(Protocol):
    """What the guard needs of a connection (the uvicorn protocol implements it)."""

    @property
    def peer(self) -> str:
        """The client's address (host only: ports change with every connection)."""

    @property
    def silent(self) -> bool:
        """No request has begun on it yet."""

    def evict(self) -> None:
        """Close now, without waiting for buffered output."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections one client address, and all clients together, may hold."""

    per_client: int
    total: int


class ConnectionGuard:
    """Keeps open connections within ``ConnectionLimits``, oldest silent one closed first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        # dicts keep insertion order: the first key is the oldest connection.
        self._all: dict[Connection, None] = {}
        self._by_peer: dict[str, dict[Connection, None]] = {}
        self._closed: Counter[str] = Counter()  # reason -> count since the last summary
        self._peers: Counter[str] = Counter()  # peer -> closed since the last summary

    def __len__(self) -> int:
        return len(self._all)

    def held_by(self, peer: str) -> int:
        """How many connections ``peer`` holds now."""
        return len(self._by_peer.get(peer, ()))

    def opened(self, conn: Connection) -> None:
        """Admit ``conn``; if a limit is exceeded, close the oldest other silent connection
        (of the same client first), or ``conn`` itself when there is none."""
        mine = self._by_peer.setdefault(conn.peer, {})
        mine[conn] = None
        self._all[conn] = None
        if len(mine) > self.limits.per_client:
            self._evict_oldest_silent(mine, conn, "over the per-client limit")
        if conn in self._all and len(self._all) > self.limits.total:
            self._evict_oldest_silent(self._all, conn, "over the total limit")

    def closed(self, conn: Connection) -> None:
        """Forget ``conn`` (closed by either end); safe to call twice."""
        self._all.pop(conn, None)
        mine = self._by_peer.get(conn.peer)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self._by_peer[conn.peer]

    def count(self, reason: str, peer: str) -> None:
        """Record a connection closed for ``reason`` (a timeout, a refused accept)."""
        self._closed[reason] += 1
        self._peers[peer] += 1

    def summary(self) -> str | None:
        """One line about what was closed since the last call, or None if nothing was."""
        if not self._closed:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self._closed.items()))
        top = ", ".join(f"{peer} ({n})" for peer, n in self._peers.most_common(3))
        self._closed.clear()
        self._peers.clear()
        return (
            f"http: closed connections: {reasons}; most from {top}; "
            f"{len(self._all)} open of {self.limits.total}"
        )

    def _evict_oldest_silent(
        self, pool: dict[Connection, None], newcomer: Connection, reason: str
    ) -> None:
        victim = next((c for c in pool if c is not newcomer and c.silent), newcomer)
        self.count(reason, victim.peer)
        self.closed(victim)
        victim.evict()
