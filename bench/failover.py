"""Failover time: SIGKILL of a coordinator → its dryads re-linked → the running jobs' tunnels
answer again (SSH banner) at the address acquire_worker gives.

Three coordinators on one private PostgreSQL database behind HAProxy (docs/examples/
haproxy.cfg), simulated dryads given every link address and spread over the coordinators
(each one's UUID picks where it dials first), a running job on every board, default
settings. Each round kills the leader (a standby serves, HAProxy sends to it, the dryads
of the dead one and of the follower that took over re-linked, every job's tunnel answers
at its link's coordinator), or with ``--follower`` the follower holding the most links
(its dryads re-linked, their jobs' tunnels answer again), times the phases from the kill,
and starts the killed one again. ``--cold`` (leader rounds) starts no standby ahead: the
next coordinator is started only after the kill (a person or systemd restarting one),
for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the e2e helpers start the real parts the same way

from tests.e2e.coordinators import free_port  # noqa: E402
from tests.e2e.haproxy import start_haproxy  # noqa: E402
from tests.e2e.load import DEVICE, SSH_BANNER, banner  # noqa: E402
from tests.e2e.several import Group, Member, following  # noqa: E402
from tests.e2e.test_job_access import start_sshd  # noqa: E402
from tests.pg_cluster import private_cluster  # noqa: E402

LEADER_PHASES = ("serving", "behind haproxy", "dryads re-linked", "tunnels answer")
FOLLOWER_PHASES = ("dryads re-linked", "tunnels answer")
MISSED = b"no coordinator reached"  # a dryad's whole round of dials failed: it backs off
GOAL = 5.0  # seconds from the SIGKILL to a working tunnel, with the default settings
POLL = 0.02  # seconds between looks: the figures' resolution


def until(check: object, limit: float, what: str) -> None:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > limit:
            raise SystemExit(f"failover: not within {limit} s: {what}")
        time.sleep(POLL)


def lb_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Jobs:
    """One running job per board, and the dryad running each."""

    def __init__(self, group: Group, lb: httpx.Client) -> None:
        self.group = group
        self.lb = lb
        self.dryad_of: dict[int, int] = {}  # request → the index of its board's dryad

    def start(self, count: int) -> None:
        uuids = [self.group.uuid_of(home) for home in self.group.dryad_homes]
        for _ in range(count):
            answer = self.lb.post("/api/v1/reqs/", json={"Caps": {"device_type": DEVICE}})
            rid = answer.json()["ReqID"]
            got = self.lb.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 60})
            assert got.status_code == 200, got.text
            worker = self.lb.get(f"/api/v1/reqs/{rid}").json()["Job"]["WorkerUUID"]
            self.dryad_of[rid] = uuids.index(worker)

    def tunnel_at_holder(self, rid: int) -> bool:
        """acquire_worker through HAProxy names the coordinator holding the link of the
        job's dryad, and the tunnel there gives a banner."""
        holder = self.group.holder(self.dryad_of[rid])
        try:
            answer = self.lb.post(f"/api/v1/reqs/{rid}/acquire_worker")
        except httpx.HTTPError:
            return False
        if holder is None or answer.status_code != 200:
            return False
        addr = answer.json()["Addr"]
        return addr["IP"] == holder.host and banner(addr["IP"], addr["Port"], 2).startswith(
            SSH_BANNER
        )

    def all_answer(self) -> bool:
        return all(self.tunnel_at_holder(rid) for rid in self.dryad_of)


def log_sizes(group: Group) -> list[int]:
    return [(home / "dryad.log").stat().st_size for home in group.dryad_homes]


def missed_rounds(group: Group, since: list[int]) -> int:
    """The dryads' failed rounds of dials since ``since`` (their logs' sizes then)."""
    return sum(
        (home / "dryad.log").read_bytes()[offset:].count(MISSED)
        for home, offset in zip(group.dryad_homes, since, strict=True)
    )


def relinked(group: Group, moved: list[int], links: list[int], dead: Member) -> bool:
    """Every dryad of ``moved`` made a new link (``links``: how many it had made before)
    to a coordinator other than ``dead``."""
    return all(
        group.links_made(n) > links[n] and group.holder(n) not in (None, dead) for n in moved
    )


def one_round(
    group: Group, lb_url: str, jobs: Jobs, follower: bool, cold: bool
) -> tuple[list[float], int, int]:
    """Kill the leader, or the follower holding the most links; the seconds from the kill
    to the end of each phase, how many dryads had to move, and how many rounds of dials
    the dryads missed meanwhile."""
    leader = group.active()
    holders = [group.holder(n) for n in range(len(group.dryad_homes))]
    links = [group.links_made(n) for n in range(len(group.dryad_homes))]
    if follower:
        followers = [m for m in group.members if m is not leader]
        dead = max(followers, key=holders.count)
        if not holders.count(dead):
            raise SystemExit("failover: no follower holds a link (run rebalance first)")
    else:
        dead = leader
    logs = log_sizes(group)
    killed = time.monotonic()
    dead.kill()
    marks = []
    if cold:
        group.start(next(m for m in group.members if m is not dead))
    if not follower:
        until(lambda: any(m.serving() for m in group.members), 120, "a standby serving")
        marks.append(time.monotonic())
        until(lambda: lb_healthy(lb_url), 60, "haproxy sending to the new coordinator")
        marks.append(time.monotonic())
    new = group.active()
    # The dead one's dryads move; so do those of a follower that took over (it drops its
    # links to start leading).
    dropped = [dead] if new is leader else [dead, new]
    moved = [n for n, h in enumerate(holders) if any(h is d for d in dropped)]
    until(lambda: relinked(group, moved, links, dead), 120, "dryads re-linked")
    marks.append(time.monotonic())
    until(jobs.all_answer, 120, "the tunnels answering")
    marks.append(time.monotonic())
    if not cold:  # (cold: the killed one is started at the next round's kill)
        group.start(dead)  # back, as a follower
        until(lambda: following(dead), 60, f"{dead.name} following")
    return [m - killed for m in marks], len(moved), missed_rounds(group, logs)


def rebalance(group: Group, jobs: Jobs) -> None:
    """When every link is on the leader (each killed follower's dryads went on to the next
    coordinator, and after two rounds that is the leader), restart the dryads that are away
    from their home (a board's crash, within the link grace: their jobs go on), so they
    spread again; untimed, before a follower's round."""
    leader = group.active()
    count = len(group.members)
    if any(group.holder(n) is not leader for n in range(len(group.dryad_homes))):
        return
    away = [n for n in range(len(group.dryad_homes)) if group.members[n % count] is not leader]
    links = [group.links_made(n) for n in range(len(group.dryad_homes))]
    for n in away:
        group.restart_dryad(n)
    until(
        lambda: all(
            group.links_made(n) > links[n] and group.holder(n) is group.members[n % count]
            for n in away
        ),
        120,
        "the restarted dryads linked at home",
    )
    until(jobs.all_answer, 120, "the tunnels answering after the restarts")


def setup(group: Group, dryads: int, sshd_port: int, cold: bool) -> Member:
    first = group.start_first()
    if not cold:
        for m in group.members[1:]:
            group.start(m)
        for m in group.members[1:]:
            until(lambda m=m: following(m), 60, f"{m.name} following")
    count = len(group.members)
    for n in range(dryads):
        # Spread: with --cold the second coordinator is not up yet, so those dryads go on
        # to the next one.
        group.dryad(n, DEVICE, sshd_port, home=n % count)
    until(
        lambda: len(ws := group.workers(first)) == dryads and all(w["Connected"] for w in ws),
        120,
        "dryads registered",
    )
    with group.http(first) as http:
        for w in group.workers(first):
            http.post(f"/api/v1/workers/{w['WorkerUUID']}/setstate", json={"WorkerState": "IDLE"})
    until(lambda: all(w["State"] == "IDLE" for w in group.workers(first)), 60, "boards IDLE")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dryads", type=int, default=6)
    parser.add_argument("--follower", action="store_true", help="kill a follower holding links")
    parser.add_argument("--cold", action="store_true", help="start the next one after the kill")
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = parser.parse_args()
    if args.follower and args.cold:
        parser.error("--cold times a leader's failover: not with --follower")
    phases = FOLLOWER_PHASES if args.follower else LEADER_PHASES
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    with private_cluster() as pg:
        group = Group(tmp, pg.url(pg.create_database()), count=2 if args.cold else 3)
        sshd = start_sshd(tmp / "sshd", "brt-nobody")
        proxy = None
        try:
            setup(group, args.dryads, sshd.port, args.cold)
            servers = [m.url.removeprefix("http://") for m in group.members]
            proxy = start_haproxy(tmp, f"127.0.0.1:{free_port()}", servers)
            headers = {"Authorization": f"Bearer {group.token}"}
            with httpx.Client(base_url=proxy.url, headers=headers, timeout=30) as lb:
                jobs = Jobs(group, lb)
                jobs.start(args.dryads)
                until(jobs.all_answer, 60, "the jobs' tunnels")
                if args.follower:
                    mode = "a follower holding links"
                else:
                    mode = "the leader, " + (
                        "cold start after the kill" if args.cold else "hot standby"
                    )
                print(
                    f"failover of {mode}: {args.dryads} dryads spread over "
                    f"{len(group.members)} coordinators, a job on each; seconds from SIGKILL:"
                )
                print("round  " + "  ".join(f"{p:>16}" for p in phases) + "  moved  missed rounds")
                results = []
                for n in range(args.rounds):
                    if args.follower:
                        rebalance(group, jobs)
                    times, moved, missed = one_round(
                        group, proxy.url, jobs, args.follower, args.cold
                    )
                    results.append(times)
                    line = "  ".join(f"{t:16.2f}" for t in times)
                    print(f"{n + 1:>5}  {line}  {moved:>5}  {missed:>13}", flush=True)
            for i, phase in enumerate(phases):
                values = [r[i] for r in results]
                print(
                    f"{phase:>16}: min {min(values):.2f}  median {statistics.median(values):.2f}"
                    f"  max {max(values):.2f} s"
                )
            worst = max(r[-1] for r in results)
            met = "met" if worst <= GOAL else "NOT met"
            print(f"goal: working tunnels within {GOAL:.0f} s (worst {worst:.2f} s): {met}")
        finally:
            if proxy is not None:
                proxy.stop()
            group.stop()
            sshd.stop()
            if args.keep:
                print(f"logs in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
