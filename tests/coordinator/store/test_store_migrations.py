"""Schema migrations: a fresh database reaches head, twice is harmless, newer is refused."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.schema import MIGRATIONS, current, head
from coordinator.store.sql import SqlStore
from coordinator.store.tables import metadata

from .builders import make_request


def test_fresh_database_migrates_to_head(fresh_store: SqlStore) -> None:
    fresh_store.migrate()
    with fresh_store.engine.connect() as conn:
        assert current(conn) == (head(),)


def test_migrated_schema_matches_the_tables(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_migrating_twice_changes_nothing(store: SqlStore) -> None:
    store.commit(Changes(requests=[make_request(1)]))
    store.migrate()
    assert store.load().requests == [make_request(1)]


def test_store_refuses_work_before_the_migration(fresh_store: SqlStore) -> None:
    with pytest.raises(StoreUnavailable, match="run the migration"):
        fresh_store.load()
    with pytest.raises(StoreUnavailable, match="run the migration"):
        fresh_store.commit(Changes(requests=[make_request(1)]))


def test_store_sees_a_migration_done_by_another_process(
    fresh_store: SqlStore, database: str
) -> None:
    other = SqlStore.open(database)
    try:
        other.migrate()
    finally:
        other.close()
    assert fresh_store.load().requests == []


def test_database_stamped_with_a_newer_revision_is_refused(store: SqlStore, database: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreUnavailable, match="revision 9999, newer than this coordinator"):
        SqlStore.open(database)
    with pytest.raises(StoreUnavailable, match="revision 9999, newer than this coordinator"):
        store.migrate()


def test_every_revision_downgrades_to_an_empty_schema(store: SqlStore) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        assert current(conn) == ()
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
