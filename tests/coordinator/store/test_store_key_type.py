"""Revision 0008: requests stored before it asked for RSA keys, as every request did then."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from coordinator.domain.model import KeyType
from coordinator.store.migrations.versions import r0008_key_type as revision
from coordinator.store.schema import MIGRATIONS
from coordinator.store.sql import SqlStore

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds, as UtcMicros stores it


def _to(store: SqlStore, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, target)


def test_a_request_stored_before_the_key_type_asked_for_rsa(sqlite_path: str) -> None:
    store = SqlStore.open(sqlite_path)
    try:
        _to(store, revision.down_revision or "base")
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO requests (id, priority, owner, groups, caps, valid_after,"
                    " deadline, state, created, queued, reason) VALUES (1, 8, 'alice', '[]',"
                    " '{}', :t, :t, 'WAITING', :t, 1, '')"
                ),
                {"t": T0},
            )
        store.migrate()
        [request] = store.load().requests
        assert request.key_type is KeyType.RSA
    finally:
        store.close()
