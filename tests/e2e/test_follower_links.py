"""A dryad given only a follower's link address (``follower_link``, the default): it enrols
and registers through the follower (the leader binding its key), the leader sees it
connected, matches a job to it and prepares its job user through the follower, the job's
tunnel is the follower's (ssh through it works), and the close has the board make that
user anew (the old one and its key removed); when its link drops, the leader learns it
(docs/failover.md §scale-out, step 2)."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.several import Group, Member
from tests.e2e.test_job_access import Sshd, access_of, ssh
from tests.pg_cluster import private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]

DEVICE = "follower-board"
PREPARED = "job user prepared for the next job"  # the dryad's log, at each prepare


def coordinators(tmp_path: Path, user: str, count: int) -> Iterator[Group]:
    """``count`` coordinators holding links as followers (the default), on a private
    PostgreSQL."""
    with private_cluster() as pg:
        config = f'job_username = "{user}"\n'
        g = Group(tmp_path, pg.url(pg.create_database()), count=count, config=config)
        try:
            yield g
        finally:
            g.stop()


@pytest.fixture
def group(tmp_path: Path, user: str) -> Iterator[Group]:
    yield from coordinators(tmp_path, user, 2)


def exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def worker(group: Group, via: Member) -> dict[str, Any]:
    workers = group.workers(via)
    return workers[0] if workers else {}


def make_idle(group: Group, http: httpx.Client, uuid: str, seen_on: Member) -> None:
    """Put the board in service and wait until ``seen_on`` says it is IDLE."""
    answer = http.post(f"/api/v1/workers/{uuid}/setstate", json={"WorkerState": "IDLE"})
    assert answer.status_code == 202, answer.text
    group.wait(lambda: worker(group, seen_on)["State"] == "IDLE", "the board IDLE", 60)


def peer_calls(http: httpx.Client, route: str, to: str, result: str = "ok") -> float:
    """A coordinator's count of its peer calls of ``route`` to ``to`` with ``result``."""
    metrics = http.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    series = f'boruta_peer_calls_total{{result="{result}",route="{route}",to="{to}"}} '
    for line in metrics.text.splitlines():
        if line.startswith(series):
            return float(line.removeprefix(series))
    return 0.0


def job(http: httpx.Client) -> tuple[int, dict[str, Any]]:
    """A request for the board, and its AccessInfo once matched."""
    rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": DEVICE}}).json()["ReqID"]
    return rid, http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 30}).json()


def test_a_dryad_linked_to_a_follower_is_served_through_it(
    group: Group, sshd: Sshd, user: str, tmp_path: Path
) -> None:
    leader = group.start_all()
    follower = group.members[1]
    group.dryad(0, DEVICE, sshd.port, user, to=[follower])
    group.wait(lambda: worker(group, leader).get("Connected"), "registered via the follower", 90)
    # The follower's link took it (it logs that once the leader answered the register).
    group.wait(lambda: b"registered (" in follower.since_start(), "the follower's log", 30)
    assert b"registered (" not in leader.since_start()
    uuid = worker(group, leader)["WorkerUUID"]
    # Its enrolment was the leader's to decide and write, passed on by the follower.
    assert f"worker {uuid}: enrolled through".encode() in leader.since_start()
    with group.http(follower) as http:
        assert peer_calls(http, "enrol", "leader") == 1  # the follower's own /metrics
        make_idle(group, http, uuid, leader)
        # An admin's call to the dryad, made on the leader, answered through the follower
        # (a healthcheck would FAIL the board: its sshd check looks for port 22).
        identify = http.post(f"/api/v1/workers/{uuid}/identify", params={"seconds": 1})
        assert identify.status_code == 204, identify.text
        with group.http(leader) as on_leader:
            # The leader counts its calls through holders (httpx logs none of them).
            assert peer_calls(on_leader, "dryads", "holder") >= 1
        made = http.post("/api/v1/reqs/", json={"Caps": {"device_type": DEVICE}})
        assert made.status_code == 201, made.text
        rid = made.json()["ReqID"]
        # PREPARE made the job user on the board: the leader's call reached the dryad.
        group.wait(
            lambda: http.get(f"/api/v1/reqs/{rid}").json()["State"] == "IN PROGRESS",
            "the job running",
            60,
        )
        assert exists(user)
        # The job's tunnel is the follower's, which holds the link: ssh through it works.
        answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 30})
        assert answer.status_code == 200, answer.text
        addr = answer.json()["Addr"]
        assert addr["IP"] == follower.host
        assert follower.tunnels[0] <= addr["Port"] <= follower.tunnels[1]
        login = access_of(rid, answer.json(), tmp_path)
        who = ssh(login, "id -un")
        assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr
        log = group.dryad_homes[0] / "dryad.log"
        assert log.read_text().count(PREPARED) == 1
        closed = http.post(f"/api/v1/reqs/{rid}/close")
        assert closed.status_code == 204, closed.text
        # The release removed the job's user (its key with it) and the board made a fresh
        # one for the next job, again on the leader's call through the follower.
        group.wait(lambda: log.read_text().count(PREPARED) == 2, "the job user made anew", 60)
        group.wait(lambda: worker(group, leader)["State"] == "IDLE", "the board IDLE again", 60)
    group.dryads[0].terminate()
    group.dryads[0].wait(20)
    group.wait(lambda: not worker(group, leader)["Connected"], "the leader told of the drop", 30)


def test_when_the_follower_dies_its_dryad_and_tunnel_move_to_the_leader(
    group: Group, sshd: Sshd, user: str, tmp_path: Path
) -> None:
    leader = group.start_all()
    follower = group.members[1]
    group.dryad(0, DEVICE, sshd.port, user, to=[follower, leader], home=0)  # follower first
    group.wait(lambda: worker(group, leader).get("Connected"), "registered via the follower", 90)
    uuid = worker(group, leader)["WorkerUUID"]
    with group.http(leader) as http:
        make_idle(group, http, uuid, leader)
        rid, first = job(http)
        assert first["Addr"]["IP"] == follower.host
        follower.kill()
        # The dryad dials the leader next; the job keeps its worker, its tunnel re-opens
        # on the leader, and acquire_worker says so.
        group.wait(
            lambda: (
                http.post(f"/api/v1/reqs/{rid}/acquire_worker").json()["Addr"]["IP"] == leader.host
            ),
            "the tunnel on the leader",
            60,
        )
        answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker").json()
        assert http.get(f"/api/v1/reqs/{rid}").json()["State"] == "IN PROGRESS"
        login = access_of(rid, answer, tmp_path)
        who = ssh(login, "id -un")
        assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr


@pytest.fixture
def three(tmp_path: Path, user: str) -> Iterator[Group]:
    yield from coordinators(tmp_path, user, 3)


def test_a_new_leader_learns_the_followers_links_and_the_tunnel_stays_with_the_link(
    three: Group, sshd: Sshd, user: str, tmp_path: Path
) -> None:
    group = three
    leader = group.start_all()
    holder = group.members[2]
    group.dryad(0, DEVICE, sshd.port, user, to=[holder])
    group.wait(lambda: worker(group, leader).get("Connected"), "registered via a follower", 90)
    uuid = worker(group, leader)["WorkerUUID"]
    with group.http(holder) as http:
        make_idle(group, http, uuid, holder)
        rid, first = job(http)
        assert first["Addr"]["IP"] == holder.host
    leader.kill()
    new = group.takeover(seconds=60)
    # Whoever leads now (the holder itself, or the other follower, which learns the link
    # from the holder's announcement), the job keeps its worker and its tunnel is where
    # the dryad's link is: on the holder's address.
    with group.http(new) as http:

        def tunnel_answers() -> bool:
            got = http.post(f"/api/v1/reqs/{rid}/acquire_worker")
            if got.status_code != 200 or got.json()["Addr"]["IP"] != holder.host:
                return False
            login = access_of(rid, got.json(), tmp_path)
            who = ssh(login, "id -un")
            return who.returncode == 0 and who.stdout.strip() == user

        group.wait(tunnel_answers, "the job's tunnel answering on the holder", 90)
        assert http.get(f"/api/v1/reqs/{rid}").json()["State"] == "IN PROGRESS"
        assert worker(group, new)["Connected"]
