"""The commit's driver statements: every column of the tables they write, and commits larger
than one of PostgreSQL's multi-row statements, on both databases."""

from __future__ import annotations

from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit import (
    INSERT_TRANSITION,
    REQUEST_COLUMNS,
    TRANSITION_COLUMNS,
    UPSERT_REQUESTS,
    UPSERT_WORKERS,
    WORKER_COLUMNS,
    request_row,
    transition_row,
    worker_row,
)
from coordinator.store.sql_commit_pg import CHUNK
from coordinator.store.tables import requests, transitions, workers

from .builders import make_request, make_transition, make_worker


def test_the_row_builders_fill_every_column_of_their_tables() -> None:
    assert list(REQUEST_COLUMNS) == [c.name for c in requests.columns]
    assert list(WORKER_COLUMNS) == [c.name for c in workers.columns]
    assert ["id", *TRANSITION_COLUMNS] == [c.name for c in transitions.columns]
    assert len(request_row(make_request(1))) == len(REQUEST_COLUMNS)
    assert len(worker_row(make_worker(1))) == len(WORKER_COLUMNS)
    assert len(transition_row(make_transition("1", "", "WAITING"))) == len(TRANSITION_COLUMNS)


def test_each_statement_has_one_placeholder_per_value() -> None:
    assert UPSERT_REQUESTS.count("?") == len(REQUEST_COLUMNS)
    assert UPSERT_WORKERS.count("?") == len(WORKER_COLUMNS)
    assert INSERT_TRANSITION.count("?") == len(TRANSITION_COLUMNS)


def test_a_commit_larger_than_a_statement_keeps_every_row_and_the_order(store: SqlStore) -> None:
    # More rows than one multi-row statement of PostgreSQL's commit takes (CHUNK).
    count = 2 * CHUNK + 3
    reqs = [make_request(n) for n in range(1, count + 1)]
    many = [make_worker(n) for n in range(1, count + 1)]
    done = [make_transition(str(n), "", "WAITING", n) for n in range(count)]
    numbered = store.commit(Changes(requests=reqs, workers=many, transitions=done))
    assert [n.transition for n in numbered] == done
    assert [n.id for n in numbered] == sorted(n.id for n in numbered)
    assert numbered == store.transitions_after(0, 10 * count)
    gone = [w.uuid for w in many[::2]]
    store.commit(Changes(removed_workers=gone))
    loaded = store.load()
    assert loaded.requests == reqs
    assert loaded.workers == many[1::2]
