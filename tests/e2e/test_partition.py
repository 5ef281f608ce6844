"""A serving coordinator cut off from PostgreSQL while it holds the dryads' links: a standby
takes over, the cut-off one stands by after ``lease_grace``, and its dryads move to the one
that can write, keeping their running job (docs/failover.md §standby)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.proxy import CuttableProxy
from tests.e2e.several import Group
from tests.pg_cluster import PgCluster, private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DEVICES = ("sim-a", "sim-b")


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def group(tmp_path: Path, pg: PgCluster) -> Iterator[Group]:
    # link_grace well past the cut, the grace and a redial round: the job must survive.
    g = Group(tmp_path, pg.url(pg.create_database()), 2, "lease_grace = 2\nlink_grace = 120\n")
    try:
        yield g
    finally:
        g.stop()


@pytest.mark.timeout(600)
def test_a_cut_off_coordinator_hands_its_dryads_to_the_one_that_can_write(
    group: Group, pg: PgCluster
) -> None:
    proxy = CuttableProxy(("127.0.0.1", pg.port))
    try:
        cut_off, standby = group.members
        group.start(cut_off, group.db.replace(f":{pg.port}/", f":{proxy.port}/"))
        group.wait(cut_off.serving, "the first serving")
        (standby.home / "link_host_key").write_bytes((cut_off.home / "link_host_key").read_bytes())
        group.start(standby)
        group.wait(standby.standby, "the second standing by")
        for n, device in enumerate(DEVICES):
            group.dryad(n, device, sshd_port=22)
        group.wait(lambda: all(group.linked_to(cut_off)), "dryads linked to the first")
        with group.http(cut_off) as http:
            uuids = {w["Caps"]["device_type"]: w["WorkerUUID"] for w in group.workers(cut_off)}
            for uuid in uuids.values():
                state = http.post(f"/api/v1/workers/{uuid}/setstate", json={"WorkerState": "IDLE"})
                assert state.status_code == 202, state.text
            group.wait(
                lambda: all(w["State"] == "IDLE" for w in group.workers(cut_off)), "boards IDLE"
            )
            made = http.post(
                "/api/v1/reqs/", json={"Priority": 5, "Caps": {"device_type": "sim-a"}}
            )
            rid = made.json()["ReqID"]
            group.wait(
                lambda: http.get(f"/api/v1/reqs/{rid}").json()["State"] == "IN PROGRESS",
                "the job running",
            )

        proxy.hold()  # the first one can no longer reach the database; the second can

        group.wait(lambda: standby.serving(), "the second taking over", 60)
        group.wait(lambda: b"has not answered for 2 s" in cut_off.since_start(), "stepping down")
        group.wait(lambda: all(group.linked_to(standby)), "dryads re-linked to the second", 120)
        with group.http(standby) as http:
            job = http.get(f"/api/v1/reqs/{rid}").json()
            assert job["State"] == "IN PROGRESS"
            assert job["Job"]["WorkerUUID"] == uuids["sim-a"]  # kept its board
            workers = {w["WorkerUUID"]: w for w in group.workers(standby)}
            assert workers[uuids["sim-a"]]["State"] == "RUNNING"
            assert workers[uuids["sim-b"]]["State"] == "IDLE"
        assert cut_off.standby()  # waiting for the database, not serving
    finally:
        proxy.close()
