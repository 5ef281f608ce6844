"""The commit's driver statements: every column of the tables they write, and commits larger
than one of PostgreSQL's multi-row statements, on both databases."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit import (
    _LISTS,
    _OBJECTS,
    _REMEMBERED,
    INSERT_TRANSITION,
    REQUEST_COLUMNS,
    TRANSITION_COLUMNS,
    UPSERT_REQUESTS,
    UPSERT_WORKERS,
    WORKER_COLUMNS,
    json_list,
    json_object,
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


_TEXT = st.text(max_size=8)
_SCALAR = st.one_of(_TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_TEXT, _SCALAR, max_size=4), min_size=1, max_size=6))
def test_json_objects_are_what_json_dumps_makes_whatever_was_remembered(
    values: list[dict[str, object]],
) -> None:
    # Equal keys with different texts (1, 1.0, True) and repeats, in one sequence.
    for value in [*values, *values]:
        assert json_object(value) == json.dumps(value)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_SCALAR, max_size=4), min_size=1, max_size=6))
def test_json_lists_are_what_json_dumps_makes_whatever_was_remembered(
    values: list[list[object]],
) -> None:
    for value in [*values, *values]:
        assert json_list(tuple(value)) == json.dumps(value)  # type: ignore[arg-type]


def test_unhashable_json_values_are_encoded_not_remembered() -> None:
    assert json_object({"a": ["b"]}) == '{"a": ["b"]}'  # type: ignore[dict-item]
    assert json_list((["b"],)) == '[["b"]]'  # type: ignore[arg-type]


def test_remembered_json_texts_stay_bounded() -> None:
    for n in range(3 * _REMEMBERED):
        assert json_list((str(n),)) == f'["{n}"]'
        assert json_object({"n": str(n)}) == f'{{"n": "{n}"}}'
    assert 0 < len(_LISTS) <= _REMEMBERED
    assert 0 < len(_OBJECTS) <= _REMEMBERED


def test_equal_values_with_different_texts_keep_their_own_texts() -> None:
    # 1 == 1.0 == True as keys of a dict, yet JSON writes each its own way.
    for _ in range(2):
        assert [json_object({"a": v}) for v in (1, 1.0, True)] == [  # type: ignore[dict-item]
            '{"a": 1}',
            '{"a": 1.0}',
            '{"a": true}',
        ]
        assert [json_object({k: "a"}) for k in (1, True)] == [  # type: ignore[dict-item]
            '{"1": "a"}',
            '{"true": "a"}',
        ]
        assert [json_list((v,)) for v in (1, 1.0, True)] == ["[1]", "[1.0]", "[true]"]  # type: ignore[arg-type]
