"""Real database failures: full disk, read-only and corrupt files, unreachable servers."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, make_url

from coordinator.domain.model import User
from coordinator.errors import StoreUnavailable
from coordinator.store import Changes, engine as engine_module
from coordinator.store.boundary import CORRUPT, FULL, READ_ONLY, UNREACHABLE
from coordinator.store.sql import SqlStore
from tests.pg_cluster import PgCluster

from .builders import make_request, make_transition, make_worker
from .read_only import read_only_file

IS_ROOT = os.geteuid() == 0


def _mount_tmpfs(where: Path, size: str) -> bool:
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class SmallDisk:
    """Where to put a database that runs out of space after a few hundred kilobytes."""

    path: str
    max_pages: int | None  # the fallback when no tmpfs can be mounted

    def open(self) -> SqlStore:
        store = SqlStore.open(self.path)
        if self.max_pages is not None:
            limit = f"PRAGMA max_page_count = {self.max_pages}"
            event.listen(store.engine, "connect", lambda dbapi, _: dbapi.execute(limit))
            store.engine.dispose()  # the next connections get the limit
        return store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real tiny tmpfs where mounting is allowed, else SQLite's max_page_count."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if not _mount_tmpfs(mountpoint, "256k"):
        yield SmallDisk(str(tmp_path / "boruta.db"), max_pages=64)
        return
    try:
        yield SmallDisk(str(mountpoint / "boruta.db"), max_pages=None)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def _migrated(path: str, changes: Changes | None = None) -> None:
    with closing(SqlStore.open(path)) as store:
        store.migrate()
        store.commit(changes or Changes())


def _fail_on_transitions(store: SqlStore) -> None:
    """Make the database reject the last statement of a commit, the transitions insert."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON transitions "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
            return
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON transitions "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )


def test_full_disk_refuses_the_commit_and_keeps_the_previous_state(small_disk: SmallDisk) -> None:
    with closing(small_disk.open()) as store:
        store.migrate()
        store.commit(Changes(requests=[make_request(1)]))
        big = [make_request(n, caps={"blob": "x" * 8000}) for n in range(2, 100)]
        with pytest.raises(StoreUnavailable, match=f"^{FULL}$"):
            store.commit(Changes(requests=big, workers=[make_worker(1)]))
        assert store.load().requests == [make_request(1)]
        assert store.load().workers == []


def test_read_only_file_still_loads_but_refuses_writes(sqlite_path: str) -> None:
    _migrated(sqlite_path, Changes(requests=[make_request(1)]))
    with read_only_file(sqlite_path), closing(SqlStore.open(sqlite_path)) as store:
        assert store.load().requests == [make_request(1)]
        with pytest.raises(StoreUnavailable, match=f"^{READ_ONLY}$"):
            store.commit(Changes(requests=[make_request(2)]))
        with pytest.raises(StoreUnavailable, match=f"^{READ_ONLY}$"):
            store.add_user(User("alice"), "hash")


@pytest.mark.skipif(not IS_ROOT, reason="mounting a read-only file system needs root")
def test_database_on_a_read_only_file_system_is_refused(tmp_path: Path) -> None:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    assert _mount_tmpfs(mountpoint, "1m")
    try:
        _migrated(str(mountpoint / "boruta.db"))
        subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True)
        with pytest.raises(StoreUnavailable, match=f"^{READ_ONLY}: "):
            SqlStore.open(mountpoint / "boruta.db")
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_garbage_file_is_refused_as_corrupt(sqlite_path: str) -> None:
    Path(sqlite_path).write_bytes(b"this is no SQLite database \x00\xff" * 400)
    with pytest.raises(StoreUnavailable, match=f"^{CORRUPT}$") as caught:
        SqlStore.open(sqlite_path)
    assert caught.value.__cause__ is not None


def test_damaged_pages_are_reported_as_corrupt(sqlite_path: str) -> None:
    _migrated(sqlite_path, Changes(requests=[make_request(n) for n in range(1, 500)]))
    with open(sqlite_path, "r+b") as file:
        file.seek(4096)  # keep the header page, scribble over the tables
        file.write(b"\xde\xad\xbe\xef" * 1024 * 16)
    with pytest.raises(StoreUnavailable, match=f"^{CORRUPT}$"):
        with closing(SqlStore.open(sqlite_path)) as store:
            store.load()


def test_missing_directory_cannot_be_reached(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=f"^{UNREACHABLE}: .*nowhere"):
        SqlStore.open(tmp_path / "nowhere" / "boruta.db")


def test_postgres_server_that_is_not_there_cannot_be_reached() -> None:
    with pytest.raises(StoreUnavailable, match=f"^{UNREACHABLE}: "):
        SqlStore.open("postgresql://postgres@127.0.0.1:1/boruta", connect_timeout=1)


@pytest.mark.postgres
def test_read_only_postgres_database_refuses_writes(pg_cluster: PgCluster) -> None:
    name = pg_cluster.create_database()
    try:
        with closing(SqlStore.open(pg_cluster.url(name))) as store:
            store.migrate()
            with pg_cluster.admin() as admin:
                admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
            store.engine.dispose()  # new sessions pick the setting up
            with pytest.raises(StoreUnavailable, match=f"^{READ_ONLY}$"):
                store.commit(Changes(requests=[make_request(1)]))
            assert store.load().requests == []
    finally:
        pg_cluster.drop_database(name)


def test_failed_commit_leaves_the_stored_state_unchanged(store: SqlStore) -> None:
    before = Changes(requests=[make_request(1)], workers=[make_worker(1), make_worker(2)])
    store.commit(before)
    _fail_on_transitions(store)
    with pytest.raises(StoreUnavailable):
        store.commit(
            Changes(
                requests=[replace(make_request(1), priority=9), make_request(2)],
                workers=[make_worker(3)],
                removed_workers=[make_worker(1).uuid],
                transitions=[make_transition("2", "", "WAITING")],
            )
        )
    assert store.load().requests == [make_request(1)]
    assert store.load().workers == [make_worker(1), make_worker(2)]


def test_naive_datetime_is_a_bug_and_leaves_nothing_behind(store: SqlStore) -> None:
    naive = replace(make_request(2), created=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        store.commit(Changes(requests=[make_request(1), naive]))
    assert store.load().requests == []


def test_secrets_stay_out_of_logs_and_errors(
    sqlite_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # which sets itself to WARNING
    _migrated(sqlite_path)
    with read_only_file(sqlite_path), closing(SqlStore.open(sqlite_path)) as store:
        with pytest.raises(StoreUnavailable) as caught:
            store.add_user(User("alice"), "TOKEN-HASH-SECRET")
        with pytest.raises(StoreUnavailable) as caught_key:
            store.commit(Changes(workers=[make_worker(1, key=b"WORKER-KEY-SECRET")]))
    errors = [caught.value, caught.value.__cause__, caught_key.value, caught_key.value.__cause__]
    assert "INSERT INTO users" in caplog.text  # statements were logged, parameters were not
    seen = caplog.text + "".join(str(e) for e in errors)
    assert "TOKEN-HASH-SECRET" not in seen
    assert "WORKER-KEY-SECRET" not in seen


def test_closed_store_is_unavailable(store: SqlStore) -> None:
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.load()


def test_dead_pooled_connections_are_replaced_once_they_idled(
    pg_cluster: PgCluster, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server restart kills every pooled connection; a connection that idled long enough
    # is pinged at checkout and replaced (here any pause counts as long enough).
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)
    with closing(SqlStore.open(pg_database)) as store:
        store.migrate()
        store.commit(Changes(requests=[make_request(1)]))
        name = make_url(pg_database).database
        with pg_cluster.admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            deadline = time.monotonic() + 30
            while admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone() != (0,):
                assert time.monotonic() < deadline, "the sessions did not end"
                time.sleep(0.02)
        store.commit(Changes(requests=[make_request(2)]))
        assert store.load().requests == [make_request(1), make_request(2)]
