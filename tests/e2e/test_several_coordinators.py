"""Three coordinators on one PostgreSQL database behind HAProxy: SIGKILL the active one under
load, twice; nothing acknowledged is lost or applied twice, jobs keep their boards."""

from __future__ import annotations

import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg  # noqa: TID251 - the invariants are checked in the database itself
import pytest

from tests.e2e.coordinators import free_port
from tests.e2e.haproxy import EXAMPLE, Haproxy, haproxy, render, start_haproxy
from tests.e2e.load import DEVICE, SSH_BANNER, EventReader, Load, Record, banner
from tests.e2e.process_farm import eventually
from tests.e2e.several import Group, Member
from tests.e2e.test_job_access import Access, Sshd, access_of, ssh
from tests.pg_cluster import PgCluster, private_cluster

DRYADS = 6
LONG_JOBS = 3  # held across both kills; the other boards serve the load's short jobs
# The board whose job user is real: the first long job logs in through its tunnel by ssh.
SSH_DEVICE = "sim-ssh"
# Seconds after a failover completed (the dryads re-linked to the new active coordinator)
# in which the load may still see the end of it: a tunnel that re-opens, a retried call.
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
    group.start_first()
    for m in group.members[1:]:
        group.start(m)
        group.wait(m.standby, f"{m.name} standby")
    servers = [m.url.removeprefix("http://") for m in group.members]
    proxy = start_haproxy(tmp_path, f"127.0.0.1:{free_port()}", servers)
    yield proxy
    proxy.stop()


def failover(group: Group, dead: Member) -> tuple[Member, float]:
    """Wait for a standby to take over from ``dead`` and every dryad to re-link to it;
    the new active one and when that was done."""
    new = group.takeover(seconds=90)
    assert new is not dead
    group.wait(lambda: all(group.linked_to(new)), f"dryads re-linked to {new.name}", 120)
    group.wait(lambda: all(w["Connected"] for w in group.workers(new)), "workers connected", 60)
    return new, time.monotonic()


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_sigkill_of_the_active_coordinator_under_load_loses_nothing(
    group: Group, lb: Haproxy, sshd: Sshd, pg: PgCluster, user: str, tmp_path: Path
) -> None:
    group.cli("user", "add", "bystander")  # the admin's quota target
    active = group.active()
    group.dryad(0, SSH_DEVICE, sshd.port, user)
    for n in range(1, DRYADS):
        group.dryad(n, DEVICE, sshd.port)
    group.wait(
        lambda: len(ws := group.workers(active)) == DRYADS and all(w["Connected"] for w in ws),
        "six dryads registered",
        120,
    )
    with group.http(active) as http:
        for w in group.workers(active):
            answer = http.post(
                f"/api/v1/workers/{w['WorkerUUID']}/setstate", json={"WorkerState": "IDLE"}
            )
            assert answer.status_code == 202, answer.text
        group.wait(lambda: all(w["State"] == "IDLE" for w in group.workers(active)), "boards IDLE")
        # The long jobs: they run through both kills.
        long_jobs = []
        for device in [SSH_DEVICE] + [DEVICE] * (LONG_JOBS - 1):
            answer = http.post("/api/v1/reqs/", json={"Caps": {"device_type": device}})
            assert answer.status_code == 201, answer.text
            long_jobs.append(answer.json()["ReqID"])
        workers_of = {}
        for rid in long_jobs:
            answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 60})
            assert answer.status_code == 200, answer.text
            addr = answer.json()["Addr"]
            assert addr["IP"] == active.host
            assert banner(addr["IP"], addr["Port"]).startswith(SSH_BANNER)
            workers_of[rid] = http.get(f"/api/v1/reqs/{rid}").json()["Job"]["WorkerUUID"]
            if rid == long_jobs[0]:
                login = access_of(rid, answer.json(), tmp_path)
        who = ssh(login, "id -un")
        assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr

    events = EventReader(lb.url, group.token)
    events.start()
    load = Load(lb.url, group.token, long_jobs)
    load.start()
    windows: list[tuple[float, float]] = []
    try:
        group.wait(lambda: load.record.cycles >= 5, "the load's first jobs", 120)
        first = active
        killed_at = time.monotonic()
        first.kill()
        second, settled = failover(group, first)
        windows.append((killed_at, settled))
        group.start(first)  # back, as a standby
        group.wait(first.standby, f"{first.name} standby again")
        done = load.record.cycles
        group.wait(lambda: load.record.cycles >= done + 5, "jobs after the first kill", 120)

        killed_at = time.monotonic()
        second.kill()
        third, settled = failover(group, second)
        windows.append((killed_at, settled))
        done = load.record.cycles
        group.wait(lambda: load.record.cycles >= done + 5, "jobs after the second kill", 120)
    finally:
        load.finish()
    record = load.record
    assert not record.unexpected, record.unexpected

    # Running jobs kept their boards; their tunnels answer where acquire_worker says now.
    with group.http(third) as http:
        for rid in long_jobs:
            job = http.get(f"/api/v1/reqs/{rid}").json()
            assert job["State"] == "IN PROGRESS" and job["Job"]["WorkerUUID"] == workers_of[rid]
            answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker")
            assert answer.status_code == 200, answer.text
            addr = answer.json()["Addr"]
            assert addr["IP"] == third.host
            assert third.tunnels[0] <= addr["Port"] <= third.tunnels[1]
            got = eventually(lambda a=addr: banner(a["IP"], a["Port"]), 60)  # type: ignore[misc]
            assert got.startswith(SSH_BANNER)
            if rid == login.rid:  # the user logs in with the job's key at the new address
                moved = Access(rid, login.user, addr["IP"], addr["Port"], login.key)
                who = ssh(moved, "id -un")
                assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr
        # One more transition, so that the reader's stream has something new to read.
        answer = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "no-such-board"}})
        assert answer.status_code == 201, answer.text

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
    print(
        f"several coordinators: {record.cycles} job cycles, {len(record.created)} creates "
        f"acknowledged, {len(record.adopted)} unanswered but stored, {len(record.unknown)} lost "
        f"before storing, {len(record.errors)} errors around the kills, "
        f"{len(events.ids)} events read with {events.reconnects} reconnections; "
        f"failovers took {', '.join(f'{end - start:.1f}' for start, end in windows)} s; "
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
    stored_markers = set(deadlines)
    assert not stored_markers & {micros(m) for m in record.unknown}
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
