"""The serving protocol against a model, on a real PostgreSQL database: whatever the order of
claims, fences, lost sessions, checks and releases among three coordinators, a write
commits only for the newest holder, and at most one of them believes it serves."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import Phase, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.errors import FarmLost, ServingTaken
from coordinator.store.serving import SERVING_LOCK_KEY, Lease
from coordinator.store.sql import SqlStore
from tests.pg_cluster import PgCluster

pytestmark = pytest.mark.postgres

N = 3
_FAR = datetime(2999, 1, 1, tzinfo=UTC)
who = st.integers(0, N - 1)


class Coordinators(RuleBasedStateMachine):
    """Three stores on one database; the model is the database's epoch row and which
    store took which epoch."""

    cluster: PgCluster
    url: str
    tokens = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.stores = [SqlStore.open(self.url) for _ in range(N)]
        self.stores[0].migrate()
        self.epoch_of: list[int | None] = [None] * N  # the epoch each one fenced with
        self.written: list[tuple[str, int]] = []  # (token, epoch current at the write)

    def _db_epoch(self) -> int:
        with self.cluster.connect(self.url.rsplit("/", 1)[1]) as conn:
            row = conn.execute("SELECT epoch FROM serving").fetchone()
        assert row is not None and isinstance(row[0], int)
        return row[0]

    @rule(i=who)
    def claim_and_fence(self, i: int) -> None:
        store = self.stores[i]
        try:
            store.claim_serving(f"coordinator {i}")
        except ServingTaken:
            return
        try:
            store.migrate()  # fences: a new epoch, unless this holder fenced already
        except FarmLost:  # it held the lock once, and another one fenced since
            assert self.epoch_of[i] is not None and self.epoch_of[i] != self._db_epoch()
            store.release_serving()  # as the coordinator does before it stands by
            self.epoch_of[i] = None
            return
        self.epoch_of[i] = store.serving_epoch()

    @rule(i=who)
    def write(self, i: int) -> None:
        token = f"{next(self.tokens):064d}"
        before = self._db_epoch()
        try:
            self.stores[i].add_enrol_token(token, _FAR)
        except FarmLost:
            assert self.epoch_of[i] is not None and self.epoch_of[i] != before
            return
        # A store that never served writes unfenced, as the admin commands do.
        assert self.epoch_of[i] in (None, before)
        self.written.append((token, before))

    @rule(i=who)
    def lose_session(self, i: int) -> None:
        """The server ends the lock's session of ``i`` (a restart, a network cut)."""
        self.cluster.end_lock_holders(SERVING_LOCK_KEY, self.url.rsplit("/", 1)[1])

    @rule(i=who)
    def check(self, i: int) -> None:
        lease = self.stores[i].lease()
        if self.epoch_of[i] is None:
            return
        if lease is Lease.HELD:
            assert self.epoch_of[i] == self._db_epoch()
        elif lease is Lease.LOST:
            self.stores[i].release_serving()
            self.epoch_of[i] = None

    @rule(i=who)
    def release(self, i: int) -> None:
        self.stores[i].release_serving()
        self.epoch_of[i] = None

    @invariant()
    def one_current_holder_at_most(self) -> None:
        current = self._db_epoch()
        assert sum(1 for e in self.epoch_of if e == current) <= 1

    def teardown(self) -> None:
        for store in self.stores:
            store.close()
        # Every acknowledged write is stored.
        check = SqlStore.open(self.url)
        try:
            now = datetime(2026, 1, 1, tzinfo=UTC)
            assert all(check.enrol_token_valid(token, now) for token, _ in self.written)
        finally:
            check.close()


def test_the_serving_protocol_keeps_one_writer(pg_cluster: PgCluster, pg_database: str) -> None:
    Coordinators.cluster = pg_cluster
    Coordinators.url = pg_database
    run = Coordinators.TestCase
    # No shrinking: each step is a round trip to a real server, and shrinking a long run
    # took minutes; the failing sequence is printed as it was.
    run.settings = settings(
        max_examples=30,
        stateful_step_count=20,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    run().runTest()
