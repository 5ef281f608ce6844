"""SQLite's commits on a connection of their own: one connection for every commit and no
SQLAlchemy transaction around them, a fresh connection after any failure, the store's
errors as before, and a serving holder's usage rows rewritten without a read."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import pytest
from sqlalchemy import event

from coordinator.domain.fairshare import Charge
from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.boundary import LOCKED, READ_ONLY
from coordinator.store.sql import SqlStore

from .builders import T0, make_request, make_transition, make_worker
from .read_only import read_only_file

DAY = timedelta(days=1)


@pytest.fixture
def sqlite_store(sqlite_path: str) -> Iterator[SqlStore]:
    with closing(SqlStore.open(sqlite_path)) as store:
        store.migrate()
        yield store


def _hours(start: int, length: int) -> Charge:
    begin = T0 + timedelta(hours=start)
    return Charge("alice", begin, begin + timedelta(hours=length), DAY)


def _behind_the_stores_back(path: str, sql: str) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute(sql)


def test_commits_share_one_connection_and_skip_sqlalchemys_transactions(
    sqlite_store: SqlStore,
) -> None:
    connected: list[object] = []
    begun: list[object] = []
    event.listen(sqlite_store.engine, "connect", lambda dbapi, _: connected.append(dbapi))
    event.listen(sqlite_store.engine, "begin", begun.append)
    sqlite_store.engine.dispose()  # the pool's connections are made again, and counted
    for n in range(1, 6):
        sqlite_store.commit(Changes(requests=[make_request(n)]))
    assert len(connected) == 1
    assert begun == []
    assert [r.id for r in sqlite_store.load().requests] == [1, 2, 3, 4, 5]


def test_a_failed_commit_gives_its_connection_up_and_the_next_one_commits(
    sqlite_store: SqlStore, sqlite_path: str
) -> None:
    connected: list[object] = []
    event.listen(sqlite_store.engine, "connect", lambda dbapi, _: connected.append(dbapi))
    sqlite_store.engine.dispose()
    sqlite_store.commit(Changes(requests=[make_request(1)]))
    _behind_the_stores_back(
        sqlite_path,
        "CREATE TRIGGER refuse BEFORE INSERT ON transitions "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    with pytest.raises(StoreUnavailable, match="refused by the test"):
        sqlite_store.commit(
            Changes(requests=[make_request(2)], transitions=[make_transition("2", "", "WAITING")])
        )
    assert sqlite_store.write_failure() is not None
    _behind_the_stores_back(sqlite_path, "DROP TRIGGER refuse")
    done = sqlite_store.commit(
        Changes(requests=[make_request(3)], transitions=[make_transition("3", "", "WAITING")])
    )
    assert sqlite_store.write_failure() is None
    assert [n.transition for n in done] == [make_transition("3", "", "WAITING")]
    assert [r.id for r in sqlite_store.load().requests] == [1, 3]
    assert len(connected) >= 2  # the commit after the failure took a new connection


def test_a_file_made_writable_again_takes_commits_again(sqlite_path: str) -> None:
    with closing(SqlStore.open(sqlite_path)) as store:
        store.migrate()
    with read_only_file(sqlite_path):
        store = SqlStore.open(sqlite_path)  # its connections open the file read-only
        with pytest.raises(StoreUnavailable, match=f"^{READ_ONLY}$"):
            store.commit(Changes(requests=[make_request(1)]))
    with closing(store):
        store.commit(Changes(requests=[make_request(2)]))
        assert [r.id for r in store.load().requests] == [2]


def test_a_closed_store_refuses_commits(sqlite_store: SqlStore) -> None:
    sqlite_store.commit(Changes(requests=[make_request(1)]))
    sqlite_store.close()
    with pytest.raises(StoreUnavailable, match="the store is closed"):
        sqlite_store.commit(Changes(requests=[make_request(2)]))


def test_commits_from_several_threads_take_turns(sqlite_store: SqlStore) -> None:
    numbered: list[int] = []
    lock = threading.Lock()

    def commit_some(first: int) -> None:
        for n in range(first, first + 20):
            done = sqlite_store.commit(
                Changes(requests=[make_request(n)], transitions=[make_transition(str(n), "", "W")])
            )
            with lock:
                numbered.extend(d.id for d in done)

    threads = [threading.Thread(target=commit_some, args=(100 * t + 1,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbered) == list(range(1, 81))
    stored = sqlite_store.transitions_after(0, 100)
    assert [n.id for n in stored] == list(range(1, 81))
    assert len(sqlite_store.load().requests) == 80


def test_a_holder_charges_from_the_usage_it_wrote(sqlite_store: SqlStore, sqlite_path: str) -> None:
    # While it serves, nobody else writes usage rows: a row this holder wrote is rewritten
    # from memory, so a change made behind its back (which no coordinator makes) is lost.
    sqlite_store.claim_serving("coordinator a")
    sqlite_store.commit(Changes(charges=[_hours(0, 1)]))
    _behind_the_stores_back(sqlite_path, "UPDATE usage SET value = 1e9")
    sqlite_store.commit(Changes(charges=[_hours(5, 2)]))
    want = _hours(5, 2).onto(_hours(0, 1).onto(None))
    got = sqlite_store.usage()["alice"]
    assert got.at == want.at
    assert got.value == pytest.approx(want.value, rel=1e-12)


def test_without_the_serving_lock_every_charge_reads_the_row(
    sqlite_store: SqlStore, sqlite_path: str
) -> None:
    sqlite_store.commit(Changes(charges=[_hours(0, 1)]))
    _behind_the_stores_back(sqlite_path, "UPDATE usage SET value = 1e9")
    sqlite_store.commit(Changes(charges=[_hours(5, 2)]))
    assert sqlite_store.usage()["alice"].value > 1e8


def test_a_failed_commit_forgets_the_usage_rows_written(
    sqlite_store: SqlStore, sqlite_path: str
) -> None:
    sqlite_store.claim_serving("coordinator a")
    sqlite_store.commit(Changes(charges=[_hours(0, 1)]))
    _behind_the_stores_back(
        sqlite_path,
        "CREATE TRIGGER refuse BEFORE INSERT ON transitions "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    with pytest.raises(StoreUnavailable):
        sqlite_store.commit(
            Changes(charges=[_hours(3, 1)], transitions=[make_transition("1", "", "W")])
        )
    _behind_the_stores_back(sqlite_path, "DROP TRIGGER refuse")
    _behind_the_stores_back(sqlite_path, "UPDATE usage SET value = 1e9")
    sqlite_store.commit(Changes(charges=[_hours(5, 2)]))  # reads the row again
    assert sqlite_store.usage()["alice"].value > 1e8


def test_a_new_claim_starts_without_the_usage_rows_of_the_last(
    sqlite_store: SqlStore, sqlite_path: str
) -> None:
    sqlite_store.claim_serving("coordinator a")
    sqlite_store.commit(Changes(charges=[_hours(0, 1)], workers=[make_worker(1)]))
    sqlite_store.release_serving()
    _behind_the_stores_back(sqlite_path, "UPDATE usage SET value = 1e9")
    sqlite_store.claim_serving("coordinator a")
    sqlite_store.commit(Changes(charges=[_hours(5, 2)]))
    assert sqlite_store.usage()["alice"].value > 1e8


def test_a_commit_waits_for_another_writer_as_long_as_configured(sqlite_path: str) -> None:
    with closing(SqlStore.open(sqlite_path)) as store:
        store.migrate()
    with closing(SqlStore.open(sqlite_path, busy_timeout=0.2)) as store:
        with closing(sqlite3.connect(sqlite_path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process's write transaction
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=f"^{LOCKED}$"):
                store.commit(Changes(requests=[make_request(1)]))
            waited = time.monotonic() - started
            other.execute("ROLLBACK")
        assert 0.15 <= waited < 4.0  # the store's 0.2 s, not the default 5 s
        assert store.write_failure() is not None
        store.commit(Changes(requests=[make_request(2)]))
        assert [r.id for r in store.load().requests] == [2]


def test_disposing_of_the_engine_renews_the_commits_connection_too(
    sqlite_store: SqlStore,
) -> None:
    sqlite_store.commit(Changes(requests=[make_request(1)]))
    connected: list[object] = []
    event.listen(sqlite_store.engine, "connect", lambda dbapi, _: connected.append(dbapi))
    sqlite_store.engine.dispose()
    sqlite_store.commit(Changes(requests=[make_request(2)]))
    sqlite_store.commit(Changes(requests=[make_request(3)]))
    assert len(connected) == 1  # made anew once, then held again
    assert [r.id for r in sqlite_store.load().requests] == [1, 2, 3]
