"""PostgreSQL away and back under a serving coordinator: writes get 503 with Retry-After
and leave nothing half done, reads go on, and it serves again without a restart; past
``lease_grace`` it stands by and comes back (docs/failover.md §standby)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.coordinators import client
from tests.e2e.proxy import CuttableProxy
from tests.e2e.test_standby import _admin_token, _spawn, _stop, _wait_for, _wait_ready
from tests.pg_cluster import PgCluster, private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NEW = {"Priority": 5, "Caps": {"b": "x"}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with private_cluster() as pg:
        yield pg


@pytest.fixture
def through_proxy(cluster: PgCluster) -> Iterator[tuple[str, CuttableProxy]]:
    """A new database, and its URL through a proxy the test can cut."""
    name = cluster.create_database()
    proxy = CuttableProxy(("127.0.0.1", cluster.port))
    try:
        yield cluster.url(name).replace(f":{cluster.port}/", f":{proxy.port}/"), proxy
    finally:
        proxy.close()
        cluster.drop_database(name)


def test_writes_get_503_while_the_database_is_away_and_work_again_after(
    tmp_path: Path, through_proxy: tuple[str, CuttableProxy]
) -> None:
    database, proxy = through_proxy
    token = _admin_token(database)
    log = tmp_path / "a.log"
    serving = _spawn(database, log, "lease_grace = 3600\n")
    try:
        url = _wait_ready(log, 1)
        with client(url, token) as http:
            before = http.post("/api/v1/reqs/", json=NEW).json()["ReqID"]
            proxy.hold()
            refused = http.post("/api/v1/reqs/", json=NEW)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            assert http.get(f"/api/v1/reqs/{before}").status_code == 200  # from memory
            _wait_for(lambda: http.get("/healthz").status_code == 503, "/healthz not ready")
            _wait_for(lambda: b"cannot reach the database" in log.read_bytes(), "the log")
            proxy.release()
            _wait_for(lambda: http.get("/healthz").status_code == 200, "/healthz ready")
            after = http.post("/api/v1/reqs/", json=NEW)
            assert after.status_code == 201, after.text
            # The refused write left nothing behind: the next ID follows the last stored.
            assert after.json()["ReqID"] == before + 1
            listed = http.post("/api/v1/reqs/list").json()
            assert [r["ID"] for r in listed] == [before, before + 1]
        assert len(list(_ready_lines(log))) == 1  # served throughout: no restart in place
    finally:
        _stop(serving)


def test_past_the_grace_it_stands_by_and_serves_again_when_the_database_is_back(
    tmp_path: Path, through_proxy: tuple[str, CuttableProxy]
) -> None:
    database, proxy = through_proxy
    token = _admin_token(database)
    log = tmp_path / "a.log"
    serving = _spawn(database, log, "lease_grace = 1\n")
    try:
        with client(_wait_ready(log, 1), token) as http:
            made = http.post("/api/v1/reqs/", json=NEW).json()["ReqID"]
        proxy.hold()
        _wait_for(lambda: b"has not answered for 1 s" in log.read_bytes(), "standing by")
        _wait_for(lambda: b"waiting for the database" in log.read_bytes(), "the wait")
        proxy.release()
        with client(_wait_ready(log, 2), token) as http:
            assert http.get(f"/api/v1/reqs/{made}").status_code == 200
            assert http.post("/api/v1/reqs/", json=NEW).json()["ReqID"] == made + 1
    finally:
        _stop(serving)


def _ready_lines(log: Path) -> Iterator[bytes]:
    return (line for line in log.read_bytes().splitlines() if b"coordinator ready on" in line)
