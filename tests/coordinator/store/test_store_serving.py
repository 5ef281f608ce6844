"""The serving lock: a second coordinator on the same database is refused, not welcomed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.errors import ServingTaken, StoreUnavailable
from coordinator.store.sql import SqlStore


def test_a_second_claim_on_the_same_database_is_refused_until_the_first_closes(
    database: str,
) -> None:
    first = SqlStore.open(database)
    second = SqlStore.open(database)
    try:
        first.claim_serving()
        first.claim_serving()  # idempotent for its holder
        with pytest.raises(ServingTaken, match="another coordinator"):
            second.claim_serving()
        first.close()
        second.claim_serving()  # the lock went with the first store
    finally:
        first.close()
        second.close()


def test_the_lock_does_not_block_other_stores_reads_or_writes(database: str) -> None:
    serving = SqlStore.open(database)
    admin = SqlStore.open(database)  # `boruta-coordinator user add` while serving
    try:
        serving.migrate()
        serving.claim_serving()
        admin.add_enrol_token("0" * 64, datetime(2999, 1, 1, tzinfo=UTC))
        assert admin.enrol_token_valid("0" * 64, datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        serving.close()
        admin.close()


def test_serve_refuses_to_start_on_a_database_another_coordinator_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "boruta.db"
    holder = SqlStore.open(str(db))
    try:
        holder.claim_serving()
        code = main(["--db", str(db), "serve", "--http", "127.0.0.1:0", "--link", "127.0.0.1:0"])
    finally:
        holder.close()
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one clear line, no traceback
    assert f"another coordinator is already serving {db};" in err


def test_claiming_a_file_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    db = tmp_path / "boruta.db"
    store = SqlStore.open(str(db))
    try:
        db.unlink()  # removed under the store's feet before the claim
        with pytest.raises(StoreUnavailable, match="cannot open .* to lock it"):
            store.claim_serving()
    finally:
        store.close()


def test_who_serves_tells_whether_the_lock_is_held(database: str) -> None:
    admin = SqlStore.open(database)
    holder = SqlStore.open(database)
    try:
        admin.migrate()
        assert not admin.who_serves().served
        holder.claim_serving("coordinator a (HTTP port 8487, pid 1)")
        holder.migrate()
        now = admin.who_serves()
        assert now.served
        assert now.holder in ("", "coordinator a (HTTP port 8487, pid 1)")  # SQLite: no row
        holder.release_serving()
        assert not admin.who_serves().served
    finally:
        admin.close()
        holder.close()


def test_the_serving_command_says_who_serves_and_exits_3_when_nobody_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "boruta.db"
    holder = SqlStore.open(str(db))
    try:
        holder.migrate()
        assert main(["--db", str(db), "serving"]) == 3
        assert capsys.readouterr().out == f"no coordinator serves {db}\n"
        holder.claim_serving()
        assert main(["--db", str(db), "serving"]) == 0
        assert capsys.readouterr().out == f"a coordinator serves {db}\n"
    finally:
        holder.close()
