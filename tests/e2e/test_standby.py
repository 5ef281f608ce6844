"""Standby coordinators on one PostgreSQL database: a second one waits (serving the API
only as a follower), takes over when the first dies, and one that lost the database
stands by again (docs/failover.md §standby)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.store.serving import SERVING_LOCK_KEY
from tests.e2e.coordinators import READY, client
from tests.pg_cluster import PgCluster, private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with private_cluster() as pg:
        yield pg


@pytest.fixture
def database(cluster: PgCluster) -> Iterator[str]:
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


def test_a_standby_takes_over_when_the_serving_coordinator_dies(
    tmp_path: Path, database: str
) -> None:
    token = _admin_token(database)
    first = _spawn(database, tmp_path / "a.log")
    first_url = _wait_ready(tmp_path / "a.log", 1)
    standby_log = tmp_path / "b.log"
    standby = _spawn(database, standby_log)
    try:
        _wait_for(lambda: b"standby: coordinator " in standby_log.read_bytes(), "standby")
        assert READY.search(standby_log.read_bytes()) is None  # not serving as a leader
        with client(first_url, token) as http:
            made = http.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"b": "x"}})
            assert made.status_code == 201, made.text
        first.kill()
        first.wait(10)
        url = _wait_ready(standby_log, 1)
        with client(url, token) as http:
            assert http.get(f"/api/v1/reqs/{made.json()['ReqID']}").status_code == 200
            again = http.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"b": "x"}})
            assert again.json()["ReqID"] == made.json()["ReqID"] + 1  # IDs are not re-issued
        assert b"now serving" in standby_log.read_bytes()
    finally:
        first.kill()
        _stop(standby)


def test_a_coordinator_that_lost_the_database_stands_by_and_serves_again(
    tmp_path: Path, cluster: PgCluster, database: str
) -> None:
    token = _admin_token(database)
    log = tmp_path / "a.log"
    serving = _spawn(database, log)
    try:
        _wait_ready(log, 1)
        # Another holder takes the lock the moment the coordinator's session ends, and
        # raises the epoch, as a standby taking over does.
        cluster.end_lock_holders(SERVING_LOCK_KEY)
        taken = cluster.admin()
        taken.execute("SET application_name = 'test'")
        _wait_for(lambda: _try_lock(taken), "the test to hold the serving lock")
        with cluster.connect(database.rsplit("/", 1)[1]) as conn:
            conn.execute("UPDATE serving SET epoch = epoch + 1, holder = 'the test'")
        _wait_for(lambda: b"standing by" in log.read_bytes(), "the coordinator to stand by")
        taken.close()  # the lock goes with the session: the coordinator takes it back
        url = _wait_ready(log, 2)
        with client(url, token) as http:
            made = http.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"b": "x"}})
            assert made.status_code == 201, made.text
    finally:
        _stop(serving)


def _admin_token(database: str) -> str:
    command = [sys.executable, "-m", "coordinator", "--db", database, "user", "add", "admin"]
    done = subprocess.run([*command, "--admin"], check=True, capture_output=True, timeout=60)
    return done.stdout.decode().splitlines()[-1]


def _spawn(database: str, log: Path, config: str = "") -> subprocess.Popen[bytes]:
    """``serve`` with its own link host key beside its log (on PostgreSQL the default is
    the current directory) and ``config`` as more TOML."""
    settings = log.with_suffix(".toml")
    settings.write_text(f'link_host_key = "{log.parent / "link_host_key"}"\n{config}')
    command = [sys.executable, "-m", "coordinator", "--db", database, "--config", str(settings)]
    command += ["serve", "--http", "127.0.0.1:0", "--link", "127.0.0.1:0"]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


def _wait_ready(log: Path, nth: int) -> str:
    found: list[re.Match[bytes]] = []

    def ready() -> bool:
        found[:] = list(READY.finditer(log.read_bytes()))
        return len(found) >= nth

    _wait_for(ready, f"ready line {nth} in {log}")
    return f"http://{found[nth - 1][1].decode()}:{found[nth - 1][2].decode()}"


def _try_lock(conn: Any) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (SERVING_LOCK_KEY,)).fetchone()
    return row is not None and row[0] is True


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
