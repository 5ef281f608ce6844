"""The commit's driver statements cover every column of the tables they write."""

from __future__ import annotations

import pytest

from coordinator.store.sql_commit import (
    REQUEST_COLUMNS,
    TRANSITION_COLUMNS,
    WORKER_COLUMNS,
    request_row,
    statements,
    transition_row,
    worker_row,
)
from coordinator.store.tables import requests, transitions, workers

from .builders import make_request, make_transition, make_worker


def test_the_row_builders_fill_every_column_of_their_tables() -> None:
    assert list(REQUEST_COLUMNS) == [c.name for c in requests.columns]
    assert list(WORKER_COLUMNS) == [c.name for c in workers.columns]
    assert ["id", *TRANSITION_COLUMNS] == [c.name for c in transitions.columns]
    assert len(request_row(make_request(1))) == len(REQUEST_COLUMNS)
    assert len(worker_row(make_worker(1))) == len(WORKER_COLUMNS)
    assert len(transition_row(make_transition("1", "", "WAITING"))) == len(TRANSITION_COLUMNS)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_each_statement_has_one_placeholder_per_value(dialect: str) -> None:
    sql = statements(dialect)
    mark = "%s" if dialect == "postgresql" else "?"
    assert sql.upsert_requests.count(mark) == len(REQUEST_COLUMNS)
    assert sql.upsert_workers.count(mark) == len(WORKER_COLUMNS)
    assert sql.insert_transition.count(mark) == len(TRANSITION_COLUMNS)
