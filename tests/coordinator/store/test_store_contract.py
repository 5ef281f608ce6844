"""The ``Store`` contract, run against a SQLite file and a PostgreSQL server alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC

import pytest

from coordinator.domain.model import KeyType, User
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import Conflict, NotFound
from coordinator.store import Changes, Snapshot
from coordinator.store.sql import SqlStore

from .builders import make_request, make_transition, make_worker, with_job


def test_empty_database_loads_nothing(store: SqlStore) -> None:
    assert store.load() == Snapshot(requests=[], workers=[])


def test_every_request_field_survives_the_round_trip(store: SqlStore) -> None:
    waiting = make_request(1, reason="")
    running = with_job(make_request(2), worker=7)
    failed = replace(
        make_request(3), state=RequestState.FAILED, reason="board died ☠", key_type=KeyType.ED25519
    )
    store.commit(Changes(requests=[running, failed, waiting]))
    assert store.load().requests == [waiting, running, failed]


def test_instants_come_back_aware_utc_to_the_microsecond(store: SqlStore) -> None:
    sent = with_job(make_request(1), worker=1)
    store.commit(Changes(requests=[sent]))
    got = store.load().requests[0]
    assert got.job is not None and sent.job is not None
    for before, after in [
        (sent.valid_after, got.valid_after),
        (sent.deadline, got.deadline),
        (sent.created, got.created),
        (sent.job.started, got.job.started),
        (sent.job.timeout, got.job.timeout),
    ]:
        assert (after, after.tzinfo) == (before, UTC)


def test_every_worker_field_survives_the_round_trip(store: SqlStore) -> None:
    workers = [make_worker(2), make_worker(1, state=WorkerState.FAIL, reason="x", key=b"")]
    store.commit(Changes(workers=workers))
    assert store.load().workers == sorted(workers, key=lambda w: w.uuid)


def test_requests_load_in_id_order(store: SqlStore) -> None:
    store.commit(Changes(requests=[make_request(n) for n in (30, 2, 1000, 7)]))
    assert [r.id for r in store.load().requests] == [2, 7, 30, 1000]


def test_commit_replaces_a_request_whole(store: SqlStore) -> None:
    store.commit(Changes(requests=[with_job(make_request(1), worker=1)]))
    done = replace(make_request(1), state=RequestState.CANCELLED, priority=16, caps={})
    store.commit(Changes(requests=[done]))
    assert store.load().requests == [done]


def test_commit_replaces_a_worker_whole(store: SqlStore) -> None:
    store.commit(Changes(workers=[make_worker(1)]))
    changed = make_worker(1, state=WorkerState.RUN, epoch=9, groups=(), ssh_address="")
    store.commit(Changes(workers=[changed]))
    assert store.load().workers == [changed]


def test_removed_workers_vanish_and_others_stay(store: SqlStore) -> None:
    store.commit(Changes(workers=[make_worker(1), make_worker(2), make_worker(3)]))
    store.commit(Changes(removed_workers=[make_worker(1).uuid, make_worker(3).uuid]))
    assert store.load().workers == [make_worker(2)]


def test_a_worker_upserted_and_removed_at_once_ends_removed(store: SqlStore) -> None:
    worker = make_worker(1)
    store.commit(Changes(workers=[worker], removed_workers=[worker.uuid]))
    assert store.load().workers == []


def test_an_empty_commit_changes_nothing(store: SqlStore) -> None:
    store.commit(Changes(requests=[make_request(1)]))
    store.commit(Changes())
    assert store.load().requests == [make_request(1)]


def test_transitions_are_appended_and_read_by_subject_in_order(store: SqlStore) -> None:
    first = [make_transition("1", "", "WAITING"), make_transition("2", "", "WAITING")]
    store.commit(Changes(transitions=first))
    store.commit(Changes(transitions=[make_transition("1", "WAITING", "IN PROGRESS", 5)]))
    assert store.transitions(subject="1") == [
        first[0],
        make_transition("1", "WAITING", "IN PROGRESS", 5),
    ]
    assert store.transitions() == [*first, make_transition("1", "WAITING", "IN PROGRESS", 5)]


def test_transitions_filter_by_kind(store: SqlStore) -> None:
    for_worker = replace(make_transition("1", "IDLE", "RUNNING"), kind="worker")
    store.commit(Changes(transitions=[make_transition("1", "", "WAITING"), for_worker]))
    assert store.transitions(kind="worker") == [for_worker]
    assert store.transitions(kind="worker", subject="2") == []


def test_transitions_limit_keeps_the_latest_oldest_first(store: SqlStore) -> None:
    records = [make_transition("1", str(n), str(n + 1), n) for n in range(5)]
    store.commit(Changes(transitions=records))
    assert store.transitions(limit=2) == records[3:]


def test_added_user_is_found_by_token_hash(store: SqlStore) -> None:
    alice = User("alice", admin=True, groups=("lab", "ünï"))
    store.add_user(alice, "hash-a")
    assert store.user_by_token("hash-a") == alice
    assert store.user_by_token("hash-b") is None


def test_users_are_listed_by_name(store: SqlStore) -> None:
    store.add_user(User("bob"), "hash-b")
    store.add_user(User("alice"), "hash-a")
    assert store.users() == [User("alice"), User("bob")]


def test_adding_a_taken_user_name_conflicts(store: SqlStore) -> None:
    store.add_user(User("alice"), "hash-a")
    with pytest.raises(Conflict, match="user alice exists"):
        store.add_user(User("alice", admin=True), "hash-b")
    assert store.users() == [User("alice")]


def test_adding_a_taken_token_conflicts(store: SqlStore) -> None:
    store.add_user(User("alice"), "hash-a")
    with pytest.raises(Conflict, match="token"):
        store.add_user(User("bob"), "hash-a")


def test_set_token_replaces_the_old_one(store: SqlStore) -> None:
    store.add_user(User("alice"), "hash-a")
    store.set_token("alice", "hash-new")
    assert store.user_by_token("hash-a") is None
    assert store.user_by_token("hash-new") == User("alice")


def test_set_token_to_a_taken_token_conflicts(store: SqlStore) -> None:
    store.add_user(User("alice"), "hash-a")
    store.add_user(User("bob"), "hash-b")
    with pytest.raises(Conflict, match="token"):
        store.set_token("bob", "hash-a")
    assert store.user_by_token("hash-b") == User("bob")


def test_set_token_of_unknown_user_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound, match="User not found"):
        store.set_token("nobody", "hash")


def test_removed_user_is_gone(store: SqlStore) -> None:
    store.add_user(User("alice"), "hash-a")
    store.remove_user("alice")
    assert (store.users(), store.user_by_token("hash-a")) == ([], None)


def test_removing_unknown_user_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound, match="User not found"):
        store.remove_user("nobody")


def test_a_second_store_sees_committed_changes(store: SqlStore, database: str) -> None:
    store.commit(Changes(requests=[make_request(1)], workers=[make_worker(1)]))
    other = SqlStore.open(database)
    try:
        assert other.load() == store.load()
    finally:
        other.close()


def test_close_is_idempotent(store: SqlStore) -> None:
    store.close()
    store.close()
