"""``ConnectionGuard``: within its limits at every step, and never closes a connection
that has begun a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, strategies as st

from coordinator.httpd.guard import ConnectionGuard, ConnectionLimits


@dataclass(eq=False)
class FakeConnection:
    peer: str
    silent: bool = True
    evicted: bool = False
    guard: ConnectionGuard | None = field(default=None, repr=False)

    def evict(self) -> None:
        self.evicted = True
        assert self.guard is not None
        self.guard.closed(self)  # as connection_lost does, later; twice is harmless


def _open(guard: ConnectionGuard, peer: str, silent: bool = True) -> FakeConnection:
    conn = FakeConnection(peer, silent, guard=guard)
    guard.opened(conn)
    return conn


def test_over_the_per_client_limit_the_oldest_silent_one_of_that_client_goes() -> None:
    guard = ConnectionGuard(ConnectionLimits(per_client=2, total=100))
    talking = _open(guard, "a", silent=False)
    first, second = _open(guard, "a"), _open(guard, "a")
    other = _open(guard, "b")
    assert first.evicted and not talking.evicted and not second.evicted and not other.evicted
    assert guard.held_by("a") == 2 and len(guard) == 3


def test_when_no_other_is_silent_the_newcomer_is_refused() -> None:
    guard = ConnectionGuard(ConnectionLimits(per_client=10, total=2))
    busy = [_open(guard, "a", silent=False), _open(guard, "b", silent=False)]
    newcomer = _open(guard, "c")
    assert newcomer.evicted and not any(c.evicted for c in busy)
    assert len(guard) == 2 and guard.held_by("c") == 0


def test_the_summary_counts_reasons_and_peers_once_then_resets() -> None:
    guard = ConnectionGuard(ConnectionLimits(per_client=1, total=10))
    for _ in range(3):
        _open(guard, "10.0.0.9")
    guard.count("too slow to send a request", "10.0.0.7")
    line = guard.summary()
    assert line is not None
    assert "2 over the per-client limit" in line and "1 too slow to send a request" in line
    assert "10.0.0.9 (2)" in line and "1 open of 10" in line
    assert guard.summary() is None


steps = st.lists(
    st.tuples(
        st.sampled_from(["open", "talk", "close"]), st.sampled_from("abcd"), st.integers(0, 50)
    ),
    max_size=120,
)


@given(steps, st.integers(1, 5), st.integers(1, 12))
def test_limits_hold_at_every_step_and_talking_connections_stay(
    ops: list[tuple[str, str, int]], per_client: int, total: int
) -> None:
    guard = ConnectionGuard(ConnectionLimits(per_client, total))
    live: list[FakeConnection] = []
    for op, peer, pick in ops:
        if op == "open":
            live.append(_open(guard, peer))
        elif live and op == "talk":
            live[pick % len(live)].silent = False
        elif live:
            conn = live.pop(pick % len(live))
            conn.evict()  # the client hangs up
            conn.evicted = False
        for conn in [c for c in live if c.evicted]:
            live.remove(conn)
            assert conn.silent  # only a silent connection is ever evicted
        assert len(guard) == len(live) <= total
        assert all(guard.held_by(p) <= per_client for p in "abcd")
