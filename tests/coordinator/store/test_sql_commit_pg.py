"""PostgreSQL's commit as one text: its literals mean their values whatever the session's
settings, and a commit that fails anywhere keeps nothing and leaves its connection as it
found it (docs/failover.md §round trips)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import text

from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit_pg import literal, write_postgresql
from tests.pg_cluster import PgCluster

from .builders import make_request, make_transition, make_worker

pytestmark = pytest.mark.postgres

# Text PostgreSQL can hold: any character but NUL, and no lone surrogates (not UTF-8).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
_TRICKY = st.sampled_from(["'", "\\", "\\'", "''", "E'", "$$", "';--", "\\x00", "%s", "\n;\n\t"])


@pytest.fixture(scope="module")
def session(pg_cluster: PgCluster) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with pg_cluster.admin() as conn:
        yield conn


@pytest.fixture
def store(pg_database: str) -> Iterator[SqlStore]:
    """A store on a new PostgreSQL database at the newest schema."""
    store = SqlStore.open(pg_database)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def _echo(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> object:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_TEXT, _TRICKY), min_size=1, max_size=4).map("".join), st.booleans())
def test_text_means_itself_whatever_standard_conforming_strings_says(
    session: psycopg.Connection[tuple[object, ...]], value: str, conforming: bool
) -> None:
    session.execute(f"SET standard_conforming_strings = {'on' if conforming else 'off'}")
    try:
        assert _echo(session, f"SELECT {literal(value)}::text") == value
        # Two in a row: a literal that ended early would take the next one's text.
        assert _echo(session, f"SELECT {literal(value)} || {literal('x')}") == value + "x"
    finally:
        session.execute("RESET standard_conforming_strings")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_mean_themselves(
    session: psycopg.Connection[tuple[object, ...]], value: int
) -> None:
    assert _echo(session, f"SELECT ({literal(value)})::bigint") == value


@settings(max_examples=100, deadline=None)
@given(st.floats())
def test_floats_mean_themselves(
    session: psycopg.Connection[tuple[object, ...]], value: float
) -> None:
    back = _echo(session, f"SELECT ({literal(value)})::float8")
    assert isinstance(back, float)
    assert (math.isnan(back) and math.isnan(value)) or back == value


@settings(max_examples=50, deadline=None)
@given(st.binary())
def test_bytes_mean_themselves(
    session: psycopg.Connection[tuple[object, ...]], value: bytes
) -> None:
    assert _echo(session, f"SELECT {literal(value)}") == value


def test_none_and_booleans(session: psycopg.Connection[tuple[object, ...]]) -> None:
    assert _echo(session, f"SELECT {literal(None)}::text") is None
    assert _echo(session, f"SELECT {literal(True)}") is True
    assert _echo(session, f"SELECT {literal(False)}") is False


def test_what_no_literal_can_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        literal("a\x00b")
    with pytest.raises(ValueError, match="type list"):
        literal([1])


def test_a_change_with_a_nul_character_sends_nothing(store: SqlStore) -> None:
    bad = dataclasses.replace(make_request(2), reason="a\x00b")
    with pytest.raises(StoreUnavailable, match="NUL"):
        store.commit(Changes(requests=[make_request(1), bad]))
    assert store.load().requests == []
    store.commit(Changes(requests=[make_request(1)]))
    assert store.load().requests == [make_request(1)]


def test_a_commit_failing_half_way_keeps_nothing_and_the_connection_stays_transactional(
    store: SqlStore,
) -> None:
    # The requests' statement runs, then the workers' fails (an epoch past BIGINT).
    bad = dataclasses.replace(make_worker(1), epoch=2**70)
    done = [make_transition("1", "", "WAITING")]
    with pytest.raises(StoreUnavailable):
        store.commit(Changes(requests=[make_request(1)], workers=[bad], transitions=done))
    loaded = store.load()
    assert (loaded.requests, loaded.workers) == ([], [])
    assert store.transitions_after(0, 10) == []
    # The pooled connection went back as it came: not in autocommit mode, so a
    # transaction rolled back keeps nothing.
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        assert not conn.connection.driver_connection.autocommit  # type: ignore[union-attr]
        conn.execute(text("DELETE FROM transitions"))
        conn.execute(text("INSERT INTO usage (owner, value, at) VALUES ('x', 1.0, 0)"))
        raise RuntimeError("roll it back")
    assert store.load().usage == {}
    numbered = store.commit(Changes(requests=[make_request(1)], transitions=done))
    assert [n.transition for n in numbered] == done
    assert store.load().requests == [make_request(1)]


def test_a_commit_on_a_connection_the_server_ended_fails_and_the_next_one_stores(
    store: SqlStore, pg_cluster: PgCluster
) -> None:
    store.commit(Changes(requests=[make_request(1)]))  # a pooled connection, used just now
    with pg_cluster.admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'boruta-coordinator'"
        )
    with pytest.raises(StoreUnavailable):
        store.commit(Changes(requests=[make_request(2)]))
    store.commit(Changes(requests=[make_request(3)]))
    assert [r.id for r in store.load().requests] == [1, 3]


def test_a_session_switched_to_another_encoding_gets_no_commit(store: SqlStore) -> None:
    # Quotes doubled are safe only in UTF-8: in a client encoding such as SJIS a quote byte
    # can end a multi-byte character, so nothing is sent on such a session.
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET client_encoding = 'SJIS'")
        conn.commit()
        driver = conn.connection.driver_connection
        assert driver is not None
        with pytest.raises(StoreUnavailable, match="UTF-8"):
            write_postgresql(driver, Changes(requests=[make_request(1)]), None)
        conn.exec_driver_sql("SET client_encoding = 'UTF8'")
        conn.commit()
    assert store.load().requests == []
    store.commit(Changes(requests=[make_request(1)]))
    assert store.load().requests == [make_request(1)]
