"""The serving epoch on PostgreSQL: a coordinator that lost the database never writes again,
and one whose session merely dropped takes its lock back (docs/failover.md §standby)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from sqlalchemy import event

from coordinator.domain.fairshare import Charge
from coordinator.errors import FarmLost, ServingTaken, StoreUnavailable
from coordinator.store import Changes, serving as serving_module
from coordinator.store.serving import SERVING_LOCK_KEY, DatabaseClock, Lease, Serving
from coordinator.store.sql import SqlStore
from tests.e2e.proxy import CuttableProxy
from tests.pg_cluster import PgCluster

from .builders import T0, make_request, make_transition

pytestmark = pytest.mark.postgres

_FAR = datetime(2999, 1, 1, tzinfo=UTC)


def _serving(url: str, holder: str) -> SqlStore:
    store = SqlStore.open(url)
    store.claim_serving(holder)
    store.migrate()  # raises the epoch, as a serving coordinator's start does
    return store


def _end_lock_session(cluster: PgCluster) -> None:
    """End the session holding the serving lock."""
    assert cluster.end_lock_holders(SERVING_LOCK_KEY) == 1


def test_a_standby_is_told_who_serves(pg_database: str) -> None:
    first = _serving(pg_database, "coordinator a (HTTP port 8487, pid 1)")
    second = SqlStore.open(pg_database)
    try:
        with pytest.raises(ServingTaken, match=r"coordinator a \(HTTP port 8487, pid 1\) serves"):
            second.claim_serving("coordinator b")
    finally:
        first.close()
        second.close()


def test_a_standbys_tries_reuse_its_sessions_and_the_lock_session_has_keepalives(
    pg_database: str,
) -> None:
    first = _serving(pg_database, "coordinator a")
    second = SqlStore.open(pg_database)
    opened: list[object] = []
    event.listen(second.engine, "connect", lambda dbapi, record: opened.append(dbapi))
    try:
        for _ in range(10):  # five seconds of a standby's polling
            with pytest.raises(ServingTaken):
                second.claim_serving("coordinator b")
        assert len(opened) <= 2  # the try's session and the serving row's read, pooled
        first.close()
        second.claim_serving("coordinator b")
        # The lock's session dies within seconds of a cut cable (docs/failover.md §standby):
        # its keepalive settings are set once it holds the lock (the session itself is read).
        lock = second._serving
        assert lock is not None and lock._conn is not None
        shown = lock._conn.exec_driver_sql("SHOW tcp_keepalives_idle").scalar_one()
        assert shown == "2"
        assert second.lease() is Lease.HELD
    finally:
        first.close()
        second.close()


def test_a_standby_whose_name_the_row_still_holds_is_told_another_takes_over(
    pg_database: str,
) -> None:
    first = _serving(pg_database, "coordinator a")
    first.release_serving()
    second = SqlStore.open(pg_database)
    try:
        second.claim_serving("coordinator b")  # holds the lock, has not fenced yet
        with pytest.raises(ServingTaken, match=r"^another coordinator is taking .* over$"):
            first.claim_serving("coordinator a")
    finally:
        first.close()
        second.close()


def test_who_serves_names_the_holder_and_the_epoch(pg_database: str) -> None:
    first = _serving(pg_database, "coordinator a")
    first.release_serving()
    second = _serving(pg_database, "coordinator b")
    try:
        assert second.who_serves() == Serving(True, "coordinator b", 2)
        assert second.serving_epoch() == 2
        second.release_serving()
        # The server ends the closed session, and its lock, a moment later.
        _wait_for(
            lambda: first.who_serves() == Serving(False, "coordinator b", 2), "the lock's release"
        )
    finally:
        first.close()
        second.close()


def test_a_commit_of_a_holder_that_lost_the_database_is_refused_whole(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    # The commit's fence runs in the same pipeline as its writes and its COMMIT.
    first = _serving(pg_database, "coordinator a")
    first.commit(Changes(requests=[make_request(1)]))
    _end_lock_session(pg_cluster)
    second = _serving(pg_database, "coordinator b")
    try:
        late = Changes(
            requests=[make_request(2)],
            transitions=[make_transition("2", "", "WAITING")],
            charges=[Charge("alice", T0, T0 + timedelta(hours=1), timedelta(days=1))],
        )
        with pytest.raises(FarmLost, match="coordinator b serves this database now"):
            first.commit(late)
        assert first.lease() is Lease.LOST
        assert second.load().requests == [make_request(1)]
        assert second.transitions_after(0, 10) == []
        assert second.usage() == {}
        assert second.commit(late)[0].transition == late.transitions[0]
    finally:
        first.close()
        second.close()


def test_a_holder_charges_from_the_usage_it_wrote_and_a_new_holder_reads_it_again(
    pg_database: str,
) -> None:
    def hours(start: int, length: int) -> Charge:
        begin = T0 + timedelta(hours=start)
        return Charge("alice", begin, begin + timedelta(hours=length), timedelta(days=1))

    first = _serving(pg_database, "coordinator a")
    second = SqlStore.open(pg_database)
    try:
        first.commit(Changes(charges=[hours(0, 1)]))
        first.commit(Changes(charges=[hours(5, 2)]))  # from what it wrote: no read
        first.release_serving()
        second.claim_serving("coordinator b")
        second.migrate()
        second.commit(Changes(charges=[hours(9, 1)]))
        second.release_serving()
        first.claim_serving("coordinator a")  # a new lock: what it wrote before is stale
        first.migrate()
        first.commit(Changes(charges=[hours(20, 3)]))
        want = None
        for item in (hours(0, 1), hours(5, 2), hours(9, 1), hours(20, 3)):
            want = item.onto(want)
        assert want is not None
        got = second.usage()["alice"]
        assert got.at == want.at
        assert got.value == pytest.approx(want.value, rel=1e-12)
    finally:
        first.close()
        second.close()


def test_a_holder_that_lost_the_database_to_another_never_writes_again(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    first = _serving(pg_database, "coordinator a")
    first.add_enrol_token("1" * 64, _FAR)  # it writes while it holds the lock
    _end_lock_session(pg_cluster)
    second = _serving(pg_database, "coordinator b")
    try:
        with pytest.raises(FarmLost, match="coordinator b serves this database now"):
            first.add_enrol_token("2" * 64, _FAR)
        assert not second.enrol_token_valid("2" * 64, datetime(2026, 1, 1, tzinfo=UTC))
        assert first.lease() is Lease.LOST
        second.add_enrol_token("3" * 64, _FAR)
        assert second.lease() is Lease.HELD
    finally:
        first.close()
        second.close()


def test_a_holder_whose_session_dropped_takes_its_lock_back(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    first = _serving(pg_database, "coordinator a")
    other = SqlStore.open(pg_database)
    try:
        _end_lock_session(pg_cluster)
        assert first.lease() is Lease.HELD  # nobody raised the epoch meanwhile
        first.add_enrol_token("1" * 64, _FAR)
        with pytest.raises(ServingTaken):
            other.claim_serving("coordinator b")
    finally:
        first.close()
        other.close()


def test_a_holder_cut_off_from_the_database_knows_it_does_not_know(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    proxy = CuttableProxy(("127.0.0.1", pg_cluster.port))
    through = pg_database.replace(f":{pg_cluster.port}/", f":{proxy.port}/")
    first = _serving(through, "coordinator a")
    try:
        proxy.hold()
        assert first.lease() is Lease.UNKNOWN
        proxy.release()
        assert first.lease() is Lease.HELD
        first.add_enrol_token("1" * 64, _FAR)
    finally:
        first.close()
        proxy.close()


def test_a_new_holder_waits_for_the_old_holders_write_in_flight(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    """The epoch is raised under the row lock every write takes: a write that began under
    the old holder commits before the new one loads anything."""
    first = _serving(pg_database, "coordinator a")
    second = SqlStore.open(pg_database)
    try:
        with first._writing():  # a write in flight on the old holder
            _end_lock_session(pg_cluster)
            second.claim_serving("coordinator b")
            fencing = threading.Thread(target=second.migrate)
            fencing.start()
            _wait_for(lambda: _waiting_for_a_lock(pg_cluster), "the new holder to wait")
            assert fencing.is_alive()
        fencing.join(60)
        assert not fencing.is_alive()
        with pytest.raises(FarmLost):
            first.add_enrol_token("1" * 64, _FAR)
    finally:
        first.close()
        second.close()


def _waiting_for_a_lock(cluster: PgCluster) -> bool:
    with cluster.admin() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name = 'boruta-coordinator'"
        ).fetchone()
    return row is not None and row[0] == 1


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class _HostBehind(datetime):
    """A host clock five minutes behind the database's."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _HostBehind:
        real = datetime.now(tz)
        return cls.fromtimestamp(real.timestamp() - 300, tz)


def test_a_holder_keeps_the_databases_time_when_its_own_clock_is_off(
    pg_database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(serving_module, "datetime", _HostBehind)
    store = _serving(pg_database, "coordinator a")
    try:
        assert abs(store.clock_offset() - timedelta(minutes=5)) < timedelta(seconds=5)
        told = DatabaseClock(store.clock_offset).now()
        assert abs(told - datetime.now(UTC)) < timedelta(seconds=5)
        assert "this host's clock is -300" in caplog.text
        assert store.lease() is Lease.HELD  # a check measures again: no change past jitter
        assert caplog.text.count("off the database's") == 1
    finally:
        store.close()


def test_on_the_same_host_the_offset_is_next_to_nothing(pg_database: str) -> None:
    store = _serving(pg_database, "coordinator a")
    try:
        assert abs(store.clock_offset()) < timedelta(seconds=1)
    finally:
        store.close()


def test_a_retake_that_fails_halfway_leaves_the_lock_free(
    pg_cluster: PgCluster, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _serving(pg_database, "coordinator a")
    other = SqlStore.open(pg_database)
    try:
        _end_lock_session(pg_cluster)
        lock = first._serving
        assert lock is not None

        def unanswered(conn: object) -> None:
            raise StoreUnavailable("cannot reach the database: the test says so")

        # The check fails, the retake gets the lock on a new session, and then that
        # session does not answer: the attempt must not keep the lock.
        monkeypatch.setattr(lock, "_follow", unanswered)
        assert first.lease() is Lease.UNKNOWN
        other.claim_serving("coordinator b")
    finally:
        first.close()
        other.close()


def test_the_holder_records_where_it_is_reached_and_the_secret_is_the_farms(
    pg_database: str,
) -> None:
    first = SqlStore.open(pg_database)
    first.claim_serving("coordinator a", "http://10.0.0.1:8487")
    first.migrate()
    other = SqlStore.open(pg_database)
    try:
        assert other.who_serves() == Serving(True, "coordinator a", 1, "http://10.0.0.1:8487")
        secret = other.peer_secret()
        assert len(bytes.fromhex(secret)) == 32  # made by the migration
        assert first.peer_secret() == secret
        assert secret not in repr(other.who_serves())
    finally:
        first.close()
        other.close()
