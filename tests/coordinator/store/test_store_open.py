"""Opening a store: which database a path or URL selects, and SQLite's connection pragmas."""

from __future__ import annotations

import os
from contextlib import closing

import pytest
from sqlalchemy import text

from coordinator.store import Store
from coordinator.store.engine import database_url
from coordinator.store.sql import SqlStore


def _pragmas(store: SqlStore) -> dict[str, object]:
    with store.engine.connect() as conn:
        return {
            name: conn.execute(text(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }


def test_sqlite_connections_use_wal_and_full_sync(sqlite_path: str) -> None:
    with closing(SqlStore.open(sqlite_path)) as store:
        assert _pragmas(store) == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "busy_timeout": 5000,
            "foreign_keys": 1,
        }


def test_sqlite_sync_and_busy_timeout_are_options(sqlite_path: str) -> None:
    with closing(SqlStore.open(sqlite_path, sqlite_sync="NORMAL", busy_timeout=0.25)) as store:
        assert _pragmas(store)["synchronous"] == 1
        assert _pragmas(store)["busy_timeout"] == 250


def test_unknown_sqlite_sync_is_refused(sqlite_path: str) -> None:
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        SqlStore.open(sqlite_path, sqlite_sync="OFF")  # type: ignore[arg-type]


def test_plain_path_selects_an_absolute_sqlite_file() -> None:
    url = database_url("farm/boruta.db")
    assert (url.drivername, url.database) == ("sqlite+pysqlite", os.path.abspath("farm/boruta.db"))


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:////var/lib/boruta.db", "sqlite"),
        ("sqlite+pysqlite:////var/lib/boruta.db", "sqlite+pysqlite"),
        ("postgresql://u:pw@db/boruta", "postgresql+psycopg"),
        ("postgresql+psycopg://u:pw@db/boruta", "postgresql+psycopg"),
        ("postgres://u:pw@db/boruta", "postgresql+psycopg"),
    ],
)
def test_url_selects_the_database_and_driver(given: str, driver: str) -> None:
    assert database_url(given).drivername == driver


@pytest.mark.parametrize(
    "given",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "mysql://db/boruta",
        "postgresql+psycopg2://db/boruta",
        "bad url://x",
    ],
)
def test_unsupported_url_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="in-memory|unsupported|cannot parse"):
        database_url(given)


def test_refused_url_does_not_show_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported") as caught:
        database_url("mysql://u:s3cret@db/boruta")
    assert "s3cret" not in str(caught.value)


def test_url_names_the_database_file(sqlite_path: str) -> None:
    with closing(SqlStore.open(sqlite_path)) as store:
        assert store.url == f"sqlite+pysqlite:///{sqlite_path}"


def test_sql_store_is_a_store(sqlite_path: str) -> None:
    store: Store = SqlStore.open(sqlite_path)  # mypy checks the protocol on this line
    store.close()
