"""``kill -9`` of a coordinator under load, then a restart: nothing acknowledged is lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import Worker
from coordinator.domain.states import WorkerState
from coordinator.service.keys import generate
from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from tests.e2e.coordinators import Coordinator, client, run_cli, start

pytestmark = pytest.mark.e2e

WORKERS = 3


def seed_idle_workers(db: Path) -> None:
    """Workers as the dryad link would leave them: registered, prepared, IDLE with a key."""
    now = datetime.now(UTC)
    store = SqlStore.open(db)
    store.migrate()
    store.commit(
        Changes(
            workers=[
                Worker(
                    WorkerUUID(f"00000000-0000-4000-8000-{n:012d}"),
                    WorkerState.IDLE,
                    {"UUID": f"00000000-0000-4000-8000-{n:012d}", "board": "rpi4"},
                    (),
                    now,
                    now,
                    f"127.0.0.1:{2200 + n}",
                    key=generate().private_pem,
                )
                for n in range(WORKERS)
            ]
        )
    )
    store.close()


def load(url: str, token: str, acknowledged: list[int], stop: threading.Event) -> None:
    """Create requests until the coordinator dies; remember every 201 answer."""
    with client(url, token) as http:
        while not stop.is_set():
            try:
                answer = http.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "rpi4"}})
            except httpx.TransportError:
                return
            if answer.status_code == 201:
                acknowledged.append(answer.json()["ReqID"])


def queue_positions(http: httpx.Client, ids: list[int]) -> dict[int, str]:
    return {i: http.head(f"/api/v1/reqs/{i}").headers.get("Boruta-Queue-Position", "") for i in ids}


def test_kill_9_under_load_loses_no_acknowledged_request(tmp_path: Path, coordinators) -> None:
    db, log = tmp_path / "farm.db", tmp_path / "coordinator.log"
    seed_idle_workers(db)
    token = run_cli(db, "user", "add", "ci").splitlines()[-1]
    first = start(db, log)
    coordinators.append(first)
    acknowledged: list[int] = []
    stop = threading.Event()
    loaders = [
        threading.Thread(target=load, args=(first.url, token, acknowledged, stop)) for _ in range(3)
    ]
    for t in loaders:
        t.start()
    while len(acknowledged) < 150:
        stop.wait(0.01)
    soon = (datetime.now(UTC) + timedelta(seconds=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client(first.url, token) as http:
        short = http.post(
            "/api/v1/reqs/", json={"Priority": 16, "Caps": {"board": "rpi4"}, "Deadline": soon}
        ).json()["ReqID"]
        before = http.post("/api/v1/reqs/list").json()
        waiting = [r["ID"] for r in before if r["State"] == "WAITING"][:20]
        positions = queue_positions(http, waiting)
    first.kill()
    stop.set()
    for t in loaders:
        t.join()

    second = start(db, log)
    coordinators.append(second)
    with client(second.url, token) as http:
        after = {r["ID"]: r for r in http.post("/api/v1/reqs/list").json()}
        assert set(acknowledged) <= set(after), "an acknowledged request was lost"
        for old in before:  # what was seen before the kill is there, unchanged
            assert after[old["ID"]] == old
        running = [r for r in after.values() if r["State"] == "IN PROGRESS"]
        assert {r["Job"]["WorkerUUID"] for r in running} == {
            f"00000000-0000-4000-8000-{n:012d}" for n in range(WORKERS)
        }
        access = http.post(f"/api/v1/reqs/{running[0]['ID']}/acquire_worker")
        assert access.status_code == 200 and access.json()["Key"].startswith("-----BEGIN RSA")
        assert queue_positions(http, waiting) == positions
        # The deadline timer re-armed from the stored time: the short request times out.
        assert http.get(f"/api/v1/reqs/{short}").json()["State"] == "WAITING"
        waited = http.post(f"/api/v1/reqs/{short}/acquire_worker", params={"wait": 30}, timeout=40)
        assert waited.json() == {"message": "invalid request: worker not assigned"}
        assert http.get(f"/api/v1/reqs/{short}").json()["State"] == "TIMEOUT"


def test_request_ids_continue_after_a_restart(tmp_path: Path, coordinators) -> None:
    db, log = tmp_path / "farm.db", tmp_path / "coordinator.log"
    seed_idle_workers(db)
    token = run_cli(db, "user", "add", "ci").splitlines()[-1]
    first = start(db, log)
    coordinators.append(first)
    with client(first.url, token) as http:
        ids = [
            http.post("/api/v1/reqs/", json={"Caps": {"board": "rpi4"}}).json()["ReqID"]
            for _ in range(5)
        ]
    first.kill()
    second: Coordinator = start(db, log)
    coordinators.append(second)
    with client(second.url, token) as http:
        nxt = http.post("/api/v1/reqs/", json={"Caps": {}}).json()["ReqID"]
    assert ids == [1, 2, 3, 4, 5] and nxt == 6  # IDs continue, never reused
