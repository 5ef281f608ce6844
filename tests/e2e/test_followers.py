"""Every coordinator on one PostgreSQL answers the API: followers forward it to the leader
(the one holding the serving lock), with the same answers and global IDs; when the leader
is SIGKILLed a follower takes over and the others follow it (docs/failover.md §scale-out)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.several import Group, Member
from tests.pg_cluster import private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    with private_cluster() as pg:
        g = Group(tmp_path, pg.url(pg.create_database()))
        try:
            yield g
        finally:
            g.stop()


def healthz(member: Member) -> tuple[int, dict[str, Any]]:
    try:
        answer = httpx.get(f"{member.url}/healthz", timeout=5)
    except httpx.HTTPError as exc:
        return 0, {"error": str(exc)}
    return answer.status_code, answer.json()


def following(member: Member) -> bool:
    """Whether ``member`` stands by and its /healthz says it forwards to a leader."""
    status, body = healthz(member)
    return member.standby() and status == 200 and body.get("role") == "follower"


def start_all(group: Group) -> tuple[Member, list[Member]]:
    """Every member started; the leader and the followers, each one's /healthz naming its
    role as a follower."""
    leader = group.start_all()
    for m in group.members[1:]:
        group.wait(lambda m=m: following(m), f"{m.name} following", 60)
    return leader, group.members[1:]


def test_every_coordinator_answers_the_api_with_one_farms_answers(group: Group) -> None:
    leader, (b, c) = start_all(group)
    assert healthz(leader)[1].get("role") is None  # the leader's own /healthz, as ever
    assert f"its API for the others: {leader.url}" in group.cli("serving")
    # Only a follower with the farm's secret may speak for a client at the leader's door.
    guessed = httpx.get(
        f"{leader.url}/api/v1/reqs/1",
        headers={"Boruta-Peer": "guessed-secret", "Authorization": f"Bearer {group.token}"},
        timeout=10,
    )
    assert guessed.status_code == 403
    group.wait(lambda: b"a wrong peer secret" in leader.since_start(), "the refusal logged")
    assert b"guessed-secret" not in leader.since_start()
    with group.http(b) as via_b, group.http(leader) as via_a, group.http(c) as via_c:
        made = via_b.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "x"}})
        assert made.status_code == 201, made.text
        rid = made.json()["ReqID"]
        seen = [h.get(f"/api/v1/reqs/{rid}") for h in (via_a, via_b, via_c)]
        assert [s.status_code for s in seen] == [200, 200, 200]
        assert seen[0].json() == seen[1].json() == seen[2].json()
        again = via_c.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "x"}})
        assert again.json()["ReqID"] == rid + 1  # one sequence of IDs for the farm
        listed = [h.post("/api/v1/reqs/list").json() for h in (via_a, via_b, via_c)]
        assert listed[0] == listed[1] == listed[2]
        # An error comes back as the leader answered it, code and all.
        missing = via_b.get("/api/v1/reqs/999999")
        assert (missing.status_code, missing.headers["Boruta-Error-Code"]) == (404, "not-found")
        # The follower's own figures; it asks for a token as the leader does.
        assert httpx.get(f"{b.url}/metrics", timeout=5).status_code == 401
        metrics = via_b.get("/metrics").text
        assert 'boruta_coordinator_role{role="follower"} 1.0' in metrics
        assert 'boruta_follower_forwarded_total{status="2xx"}' in metrics

        # The event stream through a follower shows a change made through another one.
        ids: list[int] = []
        got = threading.Event()

        def read() -> None:
            headers = {"Authorization": f"Bearer {group.token}", "Last-Event-ID": "0"}
            timeout = httpx.Timeout(10, read=40)
            url = f"{b.url}/api/v1/events"
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as s:
                for line in s.iter_lines():
                    data = json.loads(line[6:]) if line.startswith("data: ") else {}
                    if (data.get("kind"), data.get("subject")) == ("request", str(rid + 2)):
                        got.set()
                        return
                    if line.startswith("id: "):
                        ids.append(int(line[4:]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        group.wait(lambda: len(ids) >= 2, "the stream's first events", 30)
        third = via_c.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "x"}})
        assert third.json()["ReqID"] == rid + 2
        assert got.wait(30), "the new request's event through the follower"
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_when_the_leader_dies_a_follower_takes_over_and_the_others_follow_it(
    group: Group,
) -> None:
    leader, _ = start_all(group)
    with group.http(leader) as http:
        made = http.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "x"}})
    rid = made.json()["ReqID"]
    leader.kill()
    new = group.takeover(seconds=60)
    (other,) = [m for m in group.members if m.alive() and m is not new]
    group.wait(
        lambda: following(other) and healthz(other)[1]["leader"] == new.url,
        f"{other.name} following {new.name}",
        60,
    )
    with group.http(other) as via_other:
        answer = via_other.get(f"/api/v1/reqs/{rid}")
        assert answer.status_code == 200 and answer.json()["ID"] == rid
        again = via_other.post("/api/v1/reqs/", json={"Priority": 5, "Caps": {"board": "x"}})
        assert again.json()["ReqID"] == rid + 1
    group.start(leader)  # back: it follows the new leader
    group.wait(lambda: following(leader), f"{leader.name} following again", 60)
    with group.http(leader) as via_old:
        assert via_old.get(f"/api/v1/reqs/{rid + 1}").status_code == 200
