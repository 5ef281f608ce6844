"""The cleaning revision: lone surrogates an older version stored are replaced, each row logged.

An older version stored JSON's ``"\\ud800"`` escapes as they came, in the JSON columns
(caps, groups, kinds): those rows are made here as it made them, at the revision before it.
"""

from __future__ import annotations

import json
import logging

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import given, settings, strategies as st
from sqlalchemy import text

from coordinator.store.migrations.versions import r0007_clean_text as clean
from coordinator.store.schema import MIGRATIONS
from coordinator.store.sql import SqlStore
from coordinator.wire.limits import has_surrogate, scrub

BEFORE = clean.down_revision or "base"  # the schema an older version wrote these rows in
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds, as UtcMicros stores it
UUID = "00000000-0000-4000-8000-000000000001"


def _to(store: SqlStore, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def _old_rows(store: SqlStore, caps: dict[str, str], groups: list[str]) -> None:
    """A request, a worker, a user and a webhook holding ``caps`` and ``groups``."""
    caps_json, groups_json = json.dumps(caps), json.dumps(groups)  # escapes, as SQLAlchemy's
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO requests (id, priority, owner, groups, caps, valid_after, deadline,"
                " state, created, queued, reason) VALUES (1, 8, 'alice', :g, :c, :t, :t,"
                " 'WAITING', :t, 1, '')"
            ),
            {"g": groups_json, "c": caps_json, "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO workers (uuid, state, caps, groups, registered, changed,"
                " ssh_address, reason, epoch, key) VALUES (:u, 'MAINTENANCE', :c, :g, :t, :t,"
                " '10.0.0.1:22', '', 0, x'')"
            ),
            {"u": UUID, "c": json.dumps({"UUID": UUID, **caps}), "g": groups_json, "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO users (name, token_hash, admin, groups, created)"
                " VALUES ('alice', 'h', 0, :g, :t)"
            ),
            {"g": groups_json, "t": T0},
        )


def _raw(store: SqlStore) -> list[object]:
    with store.engine.connect() as conn:
        return [
            conn.execute(text(f"SELECT * FROM {table}")).all()
            for table in ("requests", "workers", "users")
        ]


def test_a_database_of_clean_rows_is_left_as_it_was(sqlite_path: str, caplog) -> None:
    store = SqlStore.open(sqlite_path)
    try:
        _to(store, BEFORE)
        _old_rows(store, {"board": "rpi4"}, ["lab"])
        before = _raw(store)
        with caplog.at_level(logging.WARNING, "coordinator.store.migrations"):
            _to(store, clean.revision)  # later revisions may add columns
        assert _raw(store) == before
        assert f"migration {clean.revision}" not in caplog.text
    finally:
        store.close()


_BAD = st.tuples(
    st.text(max_size=4), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
).map("".join)


class _Keep(logging.Handler):
    """Keeps every record (caplog cannot be used across hypothesis's examples)."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=15, deadline=None)
@given(key=_BAD, value=_BAD, group=_BAD)
def test_lone_surrogates_are_replaced_and_each_row_is_logged(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: str, group: str
) -> None:
    path = str(tmp_path_factory.mktemp("clean") / "boruta.db")
    store = SqlStore.open(path)
    records: list[logging.LogRecord] = []
    handler = _Keep(records)
    log = logging.getLogger("coordinator.store.migrations")
    log.addHandler(handler)
    try:
        _to(store, BEFORE)
        _old_rows(store, {key: value, "ok": "yes"}, [group, "lab"])
        store.migrate()
        snapshot = store.load()
        user = store.users()[0]
    finally:
        log.removeHandler(handler)
        store.close()
    (request,), (worker,) = snapshot.requests, snapshot.workers
    for texts in (request.caps, worker.caps):
        assert not any(has_surrogate(t) for t in (*texts, *texts.values()))
        assert texts["ok"] == "yes"
    assert request.caps[scrub(key)] == scrub(value)
    for groups in (request.groups, worker.groups, user.groups):
        assert "lab" in groups and not any(has_surrogate(g) for g in groups)
    messages = [r.getMessage() for r in records]
    assert any(m.startswith(f"migration {clean.revision}: requests 1: ") for m in messages)
    assert any(m.startswith(f"migration {clean.revision}: workers {UUID}: ") for m in messages)
    assert f"migration {clean.revision}: users 'alice': groups cleaned" in messages
    assert any("3 row(s) held text that is not UTF-8" in m for m in messages)
