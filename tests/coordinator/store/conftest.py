"""Fixtures: a real SQLite file, a private PostgreSQL cluster, and stores on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.store.sql import SqlStore
from tests.pg_cluster import PgCluster, private_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """Start a private PostgreSQL cluster for the session, and remove it afterwards."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL or path of an empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "boruta.db")
        return
    yield request.getfixturevalue("pg_database")


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = pg_cluster.create_database()
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    """The path of a SQLite database file that does not exist yet."""
    return str(tmp_path / "boruta.db")


@pytest.fixture
def fresh_store(database: str) -> Iterator[SqlStore]:
    """A store on an empty database, not migrated."""
    store = SqlStore.open(database)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(fresh_store: SqlStore) -> SqlStore:
    """A store on an empty database migrated to the newest schema."""
    fresh_store.migrate()
    return fresh_store
