"""Three coordinators on one PostgreSQL database behind HAProxy, six dryads spread over them:
SIGKILL a follower holding links under load, bring it back, then SIGKILL the leader;
nothing acknowledged is lost or applied twice, jobs keep their boards, and their tunnels
answer where the dryads' links went (docs/failover.md §scale-out)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg  # noqa: TID251 - the invariants are checked in the database itself
import pytest

from tests.e2e.coordinators import client, free_port
from tests.e2e.haproxy import EXAMPLE, Haproxy, haproxy, render, start_haproxy
from tests.e2e.load import DEVICE, SSH_BANNER, EventReader, Load, Record, banner
from tests.e2e.process_farm import eventually
from tests.e2e.several import Group, Member, following
from tests.e2e.test_job_access import Sshd, access_of, ssh
from tests.pg_cluster import PgCluster, private_cluster

# Where each dryad dials first (its UUID picks the place in the list of the three link
# addresses): two on each coordinator. Dryad 0's board has the real job user; it starts on
# c1, a follower, the first one killed.
HOMES = [1, 0, 2, 0, 1, 2]
LONG_JOBS = 3  # held across both kills; the other boards serve the load's short jobs
# The board whose job user is real: the first long job logs in through its tunnel by ssh.
SSH_DEVICE = "sim-ssh"
# Seconds after a failover completed (the dead one's dryads re-linked, the long jobs'
# tunnels answer where acquire_worker says) in which the load may still see the end of
# it: a short job's tunnel that re-opens, a retried call.
SETTLE = 10.0


def test_the_example_is_a_valid_haproxy_config(tmp_path: Path) -> None:
    for text in (EXAMPLE.read_text(), render("127.0.0.1:8487", ["127.0.0.1:1", "127.0.0.2:2"])):
        config = tmp_path / "haproxy.cfg"
        config.write_text(text)
        check = subprocess.run([haproxy(), "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_rendering_keeps_the_example_and_replaces_only_the_addresses() -> None:
    text = render("127.0.0.9:1234", ["127.0.0.11:80", "127.0.0.12:81"])
    example = EXAMPLE.read_text()
    assert "bind 127.0.0.9:1234\n" in text and "bind :8487" in example
    servers = [line.split() for line in text.splitlines() if line.strip().startswith("server ")]
    assert [s[2] for s in servers] == ["127.0.0.11:80", "127.0.0.12:81"]
    assert all(s[3:] == ["check"] for s in servers)
    kept = [ln for ln in example.splitlines() if not ln.strip().startswith(("bind ", "server "))]
    assert [ln for ln in text.splitlines() if ln in kept] == kept


def test_an_example_of_another_shape_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="one `bind` line"):
        render("127.0.0.1:1", ["127.0.0.1:2"], "frontend x\n    bind :1\n    bind :2\n")
    with pytest.raises(ValueError, match="follow each other"):
        example = "bind :1\nserver a 1.2.3.4:5 check\n# gap\nserver b 1.2.3.4:6 check\n"
        render("127.0.0.1:1", ["127.0.0.1:2"], example)


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def group(tmp_path: Path, pg: PgCluster, user: str) -> Iterator[Group]:
    g = Group(tmp_path, pg.url(pg.create_database()), config=f'job_username = "{user}"\n')
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def lb(tmp_path: Path, group: Group) -> Iterator[Haproxy]:
    """HAProxy over the three, once the first leads and the others follow it (holding
    links, the default)."""
    group.start_all()
    servers = [m.url.removeprefix("http://") for m in group.members]
    proxy = start_haproxy(tmp_path, f"127.0.0.1:{free_port()}", servers)
    yield proxy
    proxy.stop()


class Farm:
    """The group seen through HAProxy, with the long jobs and the boards they hold."""

    def __init__(self, group: Group, http: httpx.Client) -> None:
        self.group = group
        self.http = http
        self.long_jobs: list[int] = []
        self.workers_of: dict[int, str] = {}  # long job → its worker's UUID
        self.uuids = [group.uuid_of(home) for home in group.dryad_homes]

    def workers(self) -> list[dict[str, Any]]:
        """Every worker, or none while the answer is an error (around a kill)."""
        try:
            answer = self.http.post("/api/v1/workers/list")
        except httpx.HTTPError:
            return []
        workers: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
        return workers

    def holder_of(self, rid: int) -> Member | None:
        """The coordinator holding the link of the dryad that runs long job ``rid``."""
        return self.group.holder(self.uuids.index(self.workers_of[rid]))

    def tunnel_where_the_link_is(self, rid: int) -> dict[str, Any] | None:
        """``acquire_worker``'s answer for long job ``rid`` when its address is the holder's
        public host and a port of the holder's range, and a TCP connection there gets the
        board's sshd banner; else None."""
        holder = self.holder_of(rid)
        try:
            answer = self.http.post(f"/api/v1/reqs/{rid}/acquire_worker")
        except httpx.HTTPError:
            return None
        if holder is None or answer.status_code != 200:
            return None
        addr = answer.json()["Addr"]
        if addr["IP"] != holder.host or not holder.tunnels[0] <= addr["Port"] <= holder.tunnels[1]:
            return None
        if not banner(addr["IP"], addr["Port"], timeout=5).startswith(SSH_BANNER):
            return None
        body: dict[str, Any] = answer.json()
        return body

    def settle(
        self, dead: Member, leader: Member, before: list[Member | None], links: list[int]
    ) -> float:
        """Wait until a coordinator leads, every dryad whose link was on ``dead`` (or on a
        follower that took over from ``leader``: it drops its links to lead) linked again
        elsewhere, every worker is connected, and each long job's tunnel answers where its
        dryad's link is now; when that was. ``before``: each dryad's holder before the
        kill; ``links``: how many links each had made then."""
        group = self.group
        new = group.takeover(seconds=90)
        dropped = [dead] if new is leader else [dead, new]
        moved = [n for n, h in enumerate(before) if any(h is d for d in dropped)]

        def relinked() -> bool:
            return all(
                group.links_made(n) > links[n] and group.holder(n) not in (None, dead)
                for n in moved
            )

        group.wait(relinked, f"{dead.name}'s dryads re-linked elsewhere", 90)
        group.wait(
            lambda: len(ws := self.workers()) == len(HOMES) and all(w["Connected"] for w in ws),
            "every worker connected",
            60,
        )
        for rid in self.long_jobs:
            group.wait(
                lambda rid=rid: self.tunnel_where_the_link_is(rid), f"job {rid}'s tunnel", 60
            )
        return time.monotonic()


def start_farm(group: Group, http: httpx.Client, sshd: Sshd, user: str, tmp: Path) -> Farm:
    """Six dryads spread over the coordinators, all boards IDLE, the long jobs running;
    checks that the links spread and that each tunnel is on its link's coordinator."""
    for n, home in enumerate(HOMES):
        device, job_user = (SSH_DEVICE, user) if n == 0 else (DEVICE, "")
        group.dryad(n, device, sshd.port, job_user, home=home)
    farm = Farm(group, http)
    group.wait(
        lambda: len(ws := farm.workers()) == len(HOMES) and all(w["Connected"] for w in ws),
        "six dryads registered",
        120,
    )
    # Each dryad dialled the place its UUID picks first: the links are spread. (A dryad
    # logs its link once registered: its worker may show connected a moment earlier.)
    group.wait(lambda: None not in map(group.holder, range(len(HOMES))), "links logged", 30)
    assert [group.holder(n) for n in range(len(HOMES))] == [group.members[h] for h in HOMES]
    assert len({group.holder(n).name for n in range(len(HOMES))}) >= 2  # type: ignore[union-attr]
    for w in farm.workers():
        answer = http.post(
            f"/api/v1/workers/{w['WorkerUUID']}/setstate", json={"WorkerState": "IDLE"}
        )
        assert answer.status_code == 202, answer.text
    group.wait(lambda: all(w["State"] == "IDLE" for w in farm.workers()), "boards IDLE")
    for device in [SSH_DEVICE] + [DEVICE] * (LONG_JOBS - 1):
        answer = http.post("/api/v1/reqs/", json={"Caps": {"device_type": device}})
        assert answer.status_code == 201, answer.text
        rid = answer.json()["ReqID"]
        farm.long_jobs.append(rid)
        acquired = http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 60})
        assert acquired.status_code == 200, acquired.text
        farm.workers_of[rid] = http.get(f"/api/v1/reqs/{rid}").json()["Job"]["WorkerUUID"]
        assert farm.tunnel_where_the_link_is(rid), (rid, acquired.json()["Addr"])
    # The ssh board's link and tunnel are on c1, a follower: ssh through it works.
    ssh_job = farm.long_jobs[0]
    assert farm.holder_of(ssh_job) is group.members[HOMES[0]]
    login = access_of(ssh_job, http.post(f"/api/v1/reqs/{ssh_job}/acquire_worker").json(), tmp)
    who = ssh(login, "id -un")
    assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr
    return farm


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_sigkill_of_a_follower_then_of_the_leader_under_load_loses_nothing(
    group: Group, lb: Haproxy, sshd: Sshd, pg: PgCluster, user: str, tmp_path: Path
) -> None:
    group.cli("user", "add", "bystander")  # the admin's quota target
    leader = group.active()
    with client(lb.url, group.token) as http:
        farm = start_farm(group, http, sshd, user, tmp_path)
        events = EventReader(lb.url, group.token)
        events.start()
        load = Load(lb.url, group.token, farm.long_jobs)
        load.start()
        windows: list[tuple[float, float]] = []
        try:
            group.wait(lambda: load.record.cycles >= 5, "the load's first jobs", 120)
            # First a follower holding links: the one with the ssh board's link.
            follower = farm.holder_of(farm.long_jobs[0])
            assert follower is not None and follower is not leader
            before = [group.holder(n) for n in range(len(HOMES))]
            links = [group.links_made(n) for n in range(len(HOMES))]
            killed_at = time.monotonic()
            follower.kill()
            windows.append((killed_at, farm.settle(follower, leader, before, links)))
            assert group.active() is leader  # a follower's death changes no leader
            group.start(follower)  # back, as a follower
            group.wait(lambda: following(follower), f"{follower.name} following again", 60)
            done = load.record.cycles
            group.wait(lambda: load.record.cycles >= done + 5, "jobs after the first kill", 120)

            # Then the leader.
            before = [group.holder(n) for n in range(len(HOMES))]
            links = [group.links_made(n) for n in range(len(HOMES))]
            assert leader in before  # it holds links too
            killed_at = time.monotonic()
            leader.kill()
            windows.append((killed_at, farm.settle(leader, leader, before, links)))
            done = load.record.cycles
            group.wait(lambda: load.record.cycles >= done + 5, "jobs after the second kill", 120)
        finally:
            load.finish()
        record = load.record
        assert not record.unexpected, record.unexpected

        # Running jobs kept their boards; their tunnels answer where acquire_worker says now:
        # on the coordinator holding each one's link, wherever that went.
        for rid in farm.long_jobs:
            job = http.get(f"/api/v1/reqs/{rid}").json()
            assert (
                job["State"] == "IN PROGRESS" and job["Job"]["WorkerUUID"] == farm.workers_of[rid]
            )
            where = farm.tunnel_where_the_link_is(rid)
            assert where is not None, (rid, farm.holder_of(rid))
            if rid == farm.long_jobs[0]:  # the user logs in with the job's key at the new address
                moved = access_of(rid, where, tmp_path)
                who = ssh(moved, "id -un")
                assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr
        # One more transition, so that the reader's stream has something new to read.
        made = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "no-such-board"}})
        assert made.status_code == 201, made.text

    # The load saw errors only around the kills.
    outside = [
        e
        for e in record.errors
        if not any(start - 1 <= e.at <= end + SETTLE for start, end in windows)
    ]
    assert not outside, outside
    assert record.banners >= 15 and len(record.created) >= 15

    with psycopg.connect(
        host="127.0.0.1", port=pg.port, user="postgres", dbname=group.db.rsplit("/", 1)[1]
    ) as db:
        check_stored(db, record)
        check_never_two_owners(db)
        newest = rows(db, "SELECT max(id) FROM transitions")[0][0]
        eventually(lambda: events.ids and events.ids[-1] >= newest, 60)
        events.stop.set()
        events.thread.join(60)
        check_events(db, events)
    took = ", ".join(f"{end - start:.1f}" for start, end in windows)
    print(
        f"several coordinators: {record.cycles} job cycles, {len(record.created)} creates "
        f"acknowledged, {len(record.adopted)} unanswered but found stored, "
        f"{len(record.unknown)} unanswered and not found, {len(record.errors)} errors around "
        "the kills, "
        f"{len(events.ids)} events read with {events.reconnects} reconnections; "
        f"failovers (follower, leader) took {took} s; "
        f"errors: {dict(Counter(kind(e.what) for e in record.errors))}"
    )


Db = psycopg.Connection[tuple[Any, ...]]


def rows(db: Db, query: str) -> list[tuple[Any, ...]]:
    return list(db.execute(query).fetchall())


def kind(error: str) -> str:
    """An error's class, for the summary: what was called and what came back."""
    call, _, what = error.partition(": ")
    return f"{call.split()[0]} {what.split('(')[0].split()[0]}"


def micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def check_stored(db: Db, record: Record) -> None:
    """Every acknowledged operation is stored, and none twice."""
    requests = rows(db, "SELECT id, state, deadline, job_timeout FROM requests")
    by_id = {r[0]: r for r in requests}
    deadlines = [r[2] for r in requests]
    assert len(deadlines) == len(set(deadlines)), "a create was applied twice"
    for rid, marker in {**record.created, **record.adopted}.items():
        assert by_id[rid][2] == micros(marker), f"request {rid} is not the one created"
    # A create whose answer was lost and that the load did not find (``unknown``) may be
    # stored still, once at most (above): a follower that died while forwarding it may
    # have handed it to the leader, which applied it after the load's last look.
    for rid in record.closed:
        # DONE, or CANCELLED when the load stopped before the request got a board.
        state = by_id[rid][1]
        assert state in ("DONE", "CANCELLED"), f"close of {rid} acknowledged, state {state}"
    job_timeout = timedelta(hours=1)
    for rid, sent in record.prolonged:
        assert by_id[rid][3] >= micros(sent + job_timeout) - 1_000_000, f"prolong of {rid} lost"
    quota = rows(db, "SELECT max_waiting FROM quotas WHERE kind = 'user' AND name = 'bystander'")
    # Each PUT set a larger value: the stored one is the last acknowledged or a later one.
    assert record.quota and quota and quota[0][0] >= record.quota[-1]


def check_never_two_owners(db: Db) -> None:
    """From the transitions: no request started twice, no board ran two jobs at once."""
    moves = rows(db, "SELECT id, kind, subject, new FROM transitions ORDER BY id")
    job_worker = dict(rows(db, "SELECT id, job_worker FROM requests WHERE job_worker IS NOT NULL"))
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)  # worker → (start, end) ids
    started: dict[str, int] = {}
    runs: dict[str, int] = defaultdict(int)
    for tid, kind, subject, new in moves:
        states = seen[(kind, subject)]
        assert new not in states or kind == "worker", f"{kind} {subject} twice {new}: {states}"
        states.append(new)
        if kind == "request" and new == "IN PROGRESS":
            started[subject] = tid
        elif kind == "request" and subject in started:
            spans[job_worker[int(subject)]].append((started.pop(subject), tid))
        elif kind == "worker" and new == "RUNNING":
            runs[subject] += 1
    for subject, tid in started.items():  # still running
        spans[job_worker[int(subject)]].append((tid, 1 << 62))
    for worker, jobs in spans.items():
        jobs.sort()
        for (_, end), (begin, _) in zip(jobs, jobs[1:], strict=False):
            assert end < begin, f"worker {worker} held two requests at once: {jobs}"
        assert runs[worker] == len(jobs), f"worker {worker}: {runs[worker]} runs, {len(jobs)} jobs"


def check_events(db: Db, events: EventReader) -> None:
    """The stream read through HAProxy, resumed across both kills: every stored transition
    once, in order."""
    ids = events.ids
    stored = [r[0] for r in rows(db, "SELECT id FROM transitions ORDER BY id")]
    assert ids == sorted(set(ids)), "an event came twice or out of order"
    missing = sorted(set(stored) - set(ids))
    if missing:
        near = rows(
            db,
            "SELECT id, at, kind, subject, old, new, actor FROM transitions "
            f"WHERE id BETWEEN {missing[0] - 3} AND {missing[-1] + 3} ORDER BY id",
        )
        raise AssertionError(
            f"events missing: {missing}; the stream resumed after {events.resumed}; "
            "stored around them:\n" + "\n".join(map(str, near))
        )
    assert ids == stored
