"""The enrolment part of the ``Store`` contract: tokens and UUID-to-key bindings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert

from coordinator.errors import Conflict
from coordinator.store.schema import MIGRATIONS
from coordinator.store.sql import SqlStore
from coordinator.store.tables import workers

from .builders import T0, make_worker, worker_uuid

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def test_a_token_is_valid_until_it_expires(store: SqlStore) -> None:
    store.add_enrol_token("h1", T0 + timedelta(hours=1))
    assert store.enrol_token_valid("h1", T0)
    assert store.enrol_token_valid("h1", T0 + timedelta(minutes=59, seconds=59))
    assert not store.enrol_token_valid("h1", T0 + timedelta(hours=1))


def test_a_token_stays_valid_after_use_so_one_seeds_a_batch(store: SqlStore) -> None:
    store.add_enrol_token("h1", T0 + timedelta(hours=1))
    assert [store.enrol_token_valid("h1", T0) for _ in range(3)] == [True] * 3


def test_an_unknown_token_is_not_valid(store: SqlStore) -> None:
    store.add_enrol_token("h1", T0 + timedelta(hours=1))
    assert not store.enrol_token_valid("h2", T0)


def test_revoking_ends_every_token_and_counts_them(store: SqlStore) -> None:
    store.add_enrol_token("h1", T0 + timedelta(hours=1))
    store.add_enrol_token("h2", T0 + timedelta(days=1))
    assert store.revoke_enrol_tokens() == 2
    assert not store.enrol_token_valid("h1", T0)
    assert not store.enrol_token_valid("h2", T0)
    assert store.revoke_enrol_tokens() == 0


def test_a_token_hash_cannot_be_stored_twice(store: SqlStore) -> None:
    store.add_enrol_token("h1", T0)
    with pytest.raises(Conflict):
        store.add_enrol_token("h1", T0 + timedelta(hours=1))


def test_an_unbound_uuid_has_no_key(store: SqlStore) -> None:
    assert store.dryad_key(worker_uuid(1)) is None


def test_binding_a_uuid_keeps_its_key(store: SqlStore) -> None:
    store.bind_dryad(worker_uuid(1), KEY_A)
    store.bind_dryad(worker_uuid(2), KEY_B)
    assert (store.dryad_key(worker_uuid(1)), store.dryad_key(worker_uuid(2))) == (KEY_A, KEY_B)


def test_binding_again_with_the_same_key_is_harmless(store: SqlStore) -> None:
    store.bind_dryad(worker_uuid(1), KEY_A)
    store.bind_dryad(worker_uuid(1), KEY_A)
    assert store.dryad_key(worker_uuid(1)) == KEY_A


def test_a_bound_uuid_refuses_another_key(store: SqlStore) -> None:
    store.bind_dryad(worker_uuid(1), KEY_A)
    with pytest.raises(Conflict, match=worker_uuid(1)):
        store.bind_dryad(worker_uuid(1), KEY_B)
    assert store.dryad_key(worker_uuid(1)) == KEY_A


def test_a_binding_made_by_another_coordinator_is_seen(store: SqlStore, database: str) -> None:
    other = SqlStore.open(database)
    try:
        other.bind_dryad(worker_uuid(1), KEY_A)
    finally:
        other.close()
    with pytest.raises(Conflict):
        store.bind_dryad(worker_uuid(1), KEY_B)


def test_a_database_at_revision_0001_gains_enrolment_and_keeps_its_rows(
    fresh_store: SqlStore,
) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with fresh_store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with fresh_store.engine.begin() as conn:
        # Only the columns revision 0001 made: later revisions add some (0009 host_keys).
        w = make_worker(1)
        old = {
            "uuid": w.uuid,
            "state": w.state.value,
            "caps": dict(w.caps),
            "groups": list(w.groups),
            "registered": w.registered,
            "changed": w.changed,
            "ssh_address": w.ssh_address,
            "reason": w.reason,
            "epoch": w.epoch,
            "key": w.key,
        }
        conn.execute(insert(workers), old)
    fresh_store.migrate()
    assert fresh_store.load().workers == [make_worker(1)]
    fresh_store.bind_dryad(worker_uuid(1), KEY_A)
    assert fresh_store.dryad_key(worker_uuid(1)) == KEY_A
