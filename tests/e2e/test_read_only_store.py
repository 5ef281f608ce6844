"""A coordinator on a database file it may not write: it serves reads, answers writes
with 503 naming the cause, says not-ready on /healthz, and is ready once it can write."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.coordinator.store.read_only import IS_ROOT, read_only_file
from tests.e2e.coordinators import Coordinator, client, run_cli, start

pytestmark = pytest.mark.e2e


def test_a_read_only_file_serves_reads_refuses_writes_and_recovers(
    tmp_path: Path, coordinators: list[Coordinator]
) -> None:
    db = tmp_path / "boruta.db"
    token = run_cli(db, "user", "add", "ci").splitlines()[-1]
    # The directory stays writable: SQLite's -wal and -shm files live there.
    with read_only_file(str(db)):
        c = start(db, tmp_path / "coordinator.log", "")
        coordinators.append(c)
        with client(c.url, token) as api:
            assert api.post("/api/v1/reqs/list").status_code == 200
            created = api.post("/api/v1/reqs/", json={"Priority": 8})
            assert (created.status_code, created.json()) == (
                503,
                {"message": "database is read-only"},
            )
            health = api.get("/healthz")
            assert (health.status_code, health.json()["reason"]) == (
                503,
                "cannot commit: database is read-only",
            )
            _writable(db)
            # A probe write heals it, at the earliest 10 s after the failed write.
            deadline = time.monotonic() + 60
            while api.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "still not ready"
                time.sleep(0.5)
            assert api.post("/api/v1/reqs/", json={"Priority": 8}).status_code == 201


def _writable(db: Path) -> None:
    if IS_ROOT:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    db.chmod(0o644)
