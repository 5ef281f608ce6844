"""A database that refuses commits: 503 with a reason and Retry-After, nothing acknowledged."""

from __future__ import annotations

import sqlite3  # noqa: TID251 - another process holding the write lock
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event  # noqa: TID251 - a real SQLITE_FULL needs a pool hook

from coordinator.api import health
from coordinator.store.sql import SqlStore
from coordinator.wire.limits import MAX_CAP_VALUE, MAX_CAPS, MAX_GROUPS, MAX_NAME
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

FULL = {"message": "database is full"}
SQLITE_MAX_PAGES = 1073741823


def _cap_pages(limit: int | None) -> Any:
    """A pool ``checkout`` hook setting SQLite's max_page_count on every connection handed
    out: ``None`` caps the file at its current size, so that any growth fails SQLITE_FULL."""

    def hook(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            pages = limit or cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        finally:
            cursor.close()

    return hook


@contextmanager
def disk_full(store: SqlStore) -> Iterator[None]:
    """The database file cannot grow by a single page while this lasts."""
    full = _cap_pages(None)
    event.listen(store.engine, "checkout", full)
    store.engine.dispose()  # commits hold a connection: this has them take a new one
    try:
        yield
    finally:
        event.remove(store.engine, "checkout", full)
        event.listen(store.engine, "checkout", _cap_pages(SQLITE_MAX_PAGES))
        store.engine.dispose()


# As large as the limits allow (63 caps, leaving room for "board"): about 17 kB, overflow
# pages, so the insert must grow the file.
BIG_GROUPS = [f"g{n:02}" + "x" * (MAX_NAME - 3) for n in range(MAX_GROUPS)]
BIG_CAPS = {f"blob{n:02}": "x" * MAX_CAP_VALUE for n in range(MAX_CAPS - 1)}


async def test_a_request_that_cannot_be_committed_is_503_and_not_created(farm: AppFarm) -> None:
    await farm.parked_worker()
    with disk_full(farm.store):
        answer = await farm.post("/api/v1/reqs/", {"Priority": 8, "Caps": BIG_CAPS})
        assert (answer.status_code, answer.json()) == (503, FULL)
        assert answer.headers["Retry-After"] == "5"
        assert (await farm.post("/api/v1/reqs/list")).json() == []
    assert farm.store.load().requests == []


async def test_after_the_disk_has_room_again_the_next_request_gets_the_first_id(
    farm: AppFarm,
) -> None:
    await farm.parked_worker()
    with disk_full(farm.store):
        assert (await farm.post("/api/v1/reqs/", {"Caps": BIG_CAPS})).status_code == 503
    answer = await farm.post("/api/v1/reqs/", {"Caps": BIG_CAPS})
    assert (answer.status_code, answer.json()) == (201, {"ReqID": 1})
    assert [r.id for r in farm.store.load().requests] == [1]


async def test_healthz_is_not_ready_while_writes_fail_and_ready_when_they_work_again(
    farm: AppFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    await farm.parked_worker()
    assert (await farm.get("/healthz", as_=None)).status_code == 200
    with disk_full(farm.store):
        assert (await farm.post("/api/v1/reqs/", {"Caps": BIG_CAPS})).status_code == 503
        answer = await farm.get("/healthz", as_=None)
    assert (answer.status_code, answer.json()) == (
        503,
        {"status": "store unavailable", "reason": "cannot commit: database is full"},
    )
    assert answer.headers["Retry-After"] == "5"
    assert answer.headers["Boruta-Error-Code"] == "store-unavailable"
    # The disk has room again: after the quiet time a probe write says so.
    monkeypatch.setattr(health, "QUIET", 0.0)
    monkeypatch.setattr(health, "PROBE_EVERY", 0.0)
    assert (await farm.get("/healthz", as_=None)).json() == {"status": "ok"}
    assert (await farm.post("/api/v1/reqs/", {"Caps": BIG_CAPS})).status_code == 201


async def test_a_database_locked_past_the_busy_timeout_is_not_ready_and_says_so(
    farm: AppFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "QUIET", 0.0)
    monkeypatch.setattr(health, "PROBE_EVERY", 0.0)
    path = farm.store.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    try:
        other.execute("BEGIN IMMEDIATE")
        answer = await farm.get("/healthz", as_=None)
        assert (answer.status_code, answer.json()["reason"]) == (
            503,
            "cannot commit: database is locked by another process",
        )
        assert (await farm.post("/api/v1/reqs/list")).status_code == 200  # reads still work
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await farm.get("/healthz", as_=None)).status_code == 200


async def test_healthz_is_503_when_the_store_cannot_be_read(farm: AppFarm) -> None:
    farm.store.close()
    answer = await farm.get("/healthz", as_=None)
    assert (answer.status_code, answer.json()) == (
        503,
        {"status": "store unavailable", "reason": "cannot read: the store is closed"},
    )


async def test_an_admin_call_that_cannot_be_committed_is_503_and_changes_nothing(
    farm: AppFarm,
) -> None:
    uuid = await farm.worker(1)
    before = await farm.snapshot()
    with disk_full(farm.store):
        answer = await farm.post(f"/api/v1/workers/{uuid}/setgroups", BIG_GROUPS, as_="root")
    assert (answer.status_code, answer.json()) == (503, FULL)
    assert await farm.snapshot() == before
    assert farm.store.load().workers[0].groups == ()
