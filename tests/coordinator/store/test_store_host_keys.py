"""Each worker's sshd host keys: stored and loaded as they were, and a worker stored before
revision 0009 comes back with none."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from coordinator.store import Changes
from coordinator.store.schema import MIGRATIONS
from coordinator.store.sql import SqlStore
from tests.host_key_samples import ECDSA_521, ED25519, RSA_2048

from .builders import make_worker

UUID = "00000000-0000-4000-8000-000000000001"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z as UtcMicros stores it


def test_host_keys_survive_the_round_trip_in_order(store: SqlStore) -> None:
    worker = make_worker(1, host_keys=(RSA_2048, ED25519, ECDSA_521))
    store.commit(Changes(workers=[worker, make_worker(2)]))
    loaded = {w.uuid: w for w in store.load().workers}
    assert loaded[worker.uuid] == worker
    assert loaded[make_worker(2).uuid].host_keys == ()


def test_new_keys_replace_the_old_ones(store: SqlStore) -> None:
    store.commit(Changes(workers=[make_worker(1, host_keys=(RSA_2048, ED25519))]))
    store.commit(Changes(workers=[make_worker(1, host_keys=(ED25519,))]))
    assert store.load().workers[0].host_keys == (ED25519,)


def _migrate(store: SqlStore, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_a_worker_stored_before_the_revision_has_no_host_keys(fresh_store: SqlStore) -> None:
    _migrate(fresh_store, "0008")
    with fresh_store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workers (uuid, state, caps, groups, registered, changed,"
                " ssh_address, reason, epoch, key) VALUES (:u, 'IDLE', :c, '[]', :t, :t,"
                " '10.0.0.1:22', '', 3, :k)"
            ),
            {"u": UUID, "c": f'{{"UUID": "{UUID}"}}', "t": T0, "k": b"pem"},
        )
    fresh_store.migrate()
    (worker,) = fresh_store.load().workers
    assert (worker.uuid, worker.epoch, worker.host_keys) == (UUID, 3, ())
