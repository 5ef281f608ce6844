"""The event feed in the store, on SQLite and PostgreSQL: numbered transitions, filters, job
edges, webhooks and their deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.domain.model import Transition
from coordinator.errors import NotFound
from coordinator.store import Changes
from coordinator.store.records import TransitionQuery
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit import TRANSITION_COLUMNS, transition_row

from .builders import T0, make_request, with_job, worker_uuid


def _t(kind: str, subject: str, old: str, new: str, at: int = 0) -> Transition:
    return Transition(T0 + timedelta(seconds=at), kind, subject, old, new, "why", "root")  # type: ignore[arg-type]


def test_transitions_after_with_filters(store: SqlStore) -> None:
    assert store.last_transition_id() == 0
    w = worker_uuid(1)
    store.commit(
        Changes(
            transitions=[
                _t("request", "1", "", "WAITING"),
                _t("worker", w, "", "MAINTENANCE"),
                _t("request", "1", "WAITING", "IN PROGRESS"),
                _t("request", "2", "", "WAITING"),
            ]
        )
    )
    assert store.last_transition_id() == 4
    assert [n.id for n in store.transitions_after(0, 10)] == [1, 2, 3, 4]
    assert [n.id for n in store.transitions_after(1, 2)] == [2, 3]
    assert [n.id for n in store.transitions_after(0, 2, latest=True)] == [3, 4]
    kinds = TransitionQuery(kinds=frozenset({"worker"}))
    assert [n.transition.subject for n in store.transitions_after(0, 10, kinds)] == [w]
    subjects = TransitionQuery(subjects=frozenset({"1"}), states=frozenset({"IN PROGRESS"}))
    assert [n.id for n in store.transitions_after(0, 10, subjects)] == [3]
    assert store.transitions_after(0, 1)[0].transition == _t("request", "1", "", "WAITING")


def test_job_edges_join_owner_and_worker(store: SqlStore) -> None:
    req = with_job(make_request(7), 2)
    store.commit(
        Changes(
            requests=[req],
            transitions=[
                _t("request", "7", "", "WAITING"),
                _t("request", "7", "WAITING", "IN PROGRESS", 1),
                _t("request", "7", "IN PROGRESS", "DONE", 5),
            ],
        )
    )
    edges = store.job_edges(None, 10)
    assert [(e.event.transition.new, e.owner, e.worker) for e in edges] == [
        ("IN PROGRESS", "alice", worker_uuid(2)),
        ("DONE", "alice", worker_uuid(2)),
    ]
    assert store.job_edges(worker_uuid(3), 10) == []


def test_webhooks_and_deliveries(store: SqlStore) -> None:
    store.commit(Changes(transitions=[_t("worker", "w", "", "IDLE")]))  # before the hook
    hook = store.add_webhook("http://h/", ["request"], "s" * 20, "root", T0)
    assert hook.since_event == 1
    store.commit(
        Changes(
            transitions=[_t("request", "1", "", "WAITING"), _t("worker", "w", "IDLE", "RUNNING")]
        )
    )
    assert store.enqueue_deliveries("webhooks", T0, 10) == (2, 1)
    assert store.enqueue_deliveries("webhooks", T0, 10) == (0, 0)  # the cursor moved
    (due,) = store.due_deliveries(T0, 10)
    assert (due.url, due.secret, due.event.id, due.delivery.attempts) == (
        "http://h/",
        "s" * 20,
        2,
        0,
    )
    later = T0 + timedelta(seconds=30)
    store.record_delivery(due.delivery.id, "pending", 1, "HTTP 500", later)
    assert store.due_deliveries(T0, 10) == []
    assert store.next_delivery_at() == later
    store.record_delivery(due.delivery.id, "delivered", 2, "HTTP 500", None, later)
    (done,) = store.deliveries(hook.id)
    assert (done.status, done.attempts, done.delivered_at) == ("delivered", 2, later)
    store.delete_webhook(hook.id, "root", later)
    with pytest.raises(NotFound):
        store.delete_webhook(hook.id, "root", later)
    assert store.webhooks() == []
    (gone,) = store.webhooks(deleted=True)
    assert (gone.deleted_by, gone.deleted_at) == ("root", later)


def test_commit_returns_its_transitions_numbered_as_stored(store: SqlStore) -> None:
    assert store.commit(Changes(requests=[make_request(1)])) == []
    batch = [_t("request", str(n), "", "WAITING", n) for n in range(1, 8)]
    first = store.commit(Changes(transitions=batch[:3]))
    second = store.commit(Changes(transitions=batch[3:]))
    assert [n.transition for n in first + second] == batch
    assert first + second == store.transitions_after(0, 100)  # the ids the store gave them


def test_add_deliveries_from_memory_moves_the_cursor_and_skips_what_it_passed(
    store: SqlStore,
) -> None:
    events = [(1, "request"), (2, "worker")]
    assert store.add_deliveries("webhooks", events, T0) == []  # no webhook: nothing written
    store.commit(Changes(transitions=[_t("request", "1", "", "WAITING")] * 2))
    hook = store.add_webhook("http://h/", ["request"], "s" * 20, "root", T0)
    both = store.add_webhook("http://b/", ["request", "worker"], "t" * 20, "root", T0)
    store.commit(
        Changes(
            transitions=[
                _t("request", "2", "", "WAITING"),
                _t("worker", "w", "", "IDLE"),
                _t("request", "2", "WAITING", "CANCEL"),
            ]
        )
    )
    made = store.add_deliveries("webhooks", [(3, "request"), (4, "worker")], T0)
    assert [(d.delivery.hook_id, d.delivery.event_id, d.url) for d in made] == [
        (hook.id, 3, "http://h/"),
        (both.id, 3, "http://b/"),
        (both.id, 4, "http://b/"),
    ]
    assert made[1].secret == "t" * 20 and made[0].delivery.status == "pending"
    stored = {d.id: d for h in (hook.id, both.id) for d in store.deliveries(h)}
    assert all(stored[d.delivery.id] == d.delivery for d in made)
    # Given again (a backlog read raced it), or before a webhook's creation: skipped.
    assert store.add_deliveries("webhooks", [(1, "request"), (4, "worker")], T0) == []
    assert store.enqueue_deliveries("webhooks", T0, 10) == (1, 2)  # only event 5 is left
    later = T0 + timedelta(seconds=5)
    store.record_delivery(made[0].delivery.id, "pending", 1, "HTTP 500", later)
    assert store.next_delivery_at() == T0
    assert store.next_delivery_at(T0) == later


def test_commit_numbers_transitions_as_stored_near_the_largest_id(store: SqlStore) -> None:
    # SQLite numbers a commit's transitions after the largest id without asking back,
    # except near the rowid's limit, where it picks ids at random.
    largest = 2**63 - 3
    _put_transition(largest, store)
    batch = [_t("request", str(n), "", "WAITING", n) for n in range(1, 5)]
    numbered = store.commit(Changes(transitions=batch))
    assert [n.transition for n in numbered] == batch
    stored = [n for n in store.transitions_after(0, 100) if n.id != largest]
    assert sorted(numbered, key=lambda n: n.id) == stored


def test_commit_numbers_transitions_after_the_largest_stored_id(store: SqlStore) -> None:
    _put_transition(41, store)
    batch = [_t("request", str(n), "", "WAITING", n) for n in range(1, 4)]
    numbered = store.commit(Changes(transitions=batch))
    assert numbered == [n for n in store.transitions_after(0, 100) if n.id != 41]
    assert [n.transition for n in numbered] == batch


_UP = _t("worker", "w", "", "UP")


def _put_transition(rid: int, store: SqlStore) -> None:
    """Store ``_UP`` with the id ``rid``, as another writer would have."""
    names = ", ".join(("id", *TRANSITION_COLUMNS))
    with store.engine.begin() as conn:
        mark = "%s" if conn.dialect.name == "postgresql" else "?"
        marks = ", ".join(mark for _ in range(len(TRANSITION_COLUMNS) + 1))
        conn.exec_driver_sql(
            f"INSERT INTO transitions ({names}) VALUES ({marks})", (rid, *transition_row(_UP))
        )
