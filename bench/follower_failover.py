"""Failover with links spread: SIGKILL of a follower holding every dryad's link → the
dryads re-linked to the leader → a running job's tunnel answers again there.

Two coordinators on one private PostgreSQL database, both with ``follower_link = true``,
simulated dryads given the follower's link address first and the leader's next (so they
all link to the follower), one running job whose tunnel is the follower's; otherwise the
default settings. Each round is a fresh farm (a new database): the dryads would stay with
the leader after a round. See bench/README.md; docs/failover.md §scale-out.
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

from tests.e2e.load import DEVICE, SSH_BANNER, banner  # noqa: E402
from tests.e2e.several import Group, Member  # noqa: E402
from tests.e2e.test_job_access import start_sshd  # noqa: E402
from tests.pg_cluster import PgCluster, private_cluster  # noqa: E402

PHASES = ("leader told", "dryads re-linked", "tunnel answers")
GOAL = 5.0  # seconds from the SIGKILL to a working tunnel, with the default settings
POLL = 0.02  # seconds between looks: the figures' resolution


def until(check: object, limit: float, what: str) -> None:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > limit:
            raise SystemExit(f"follower failover: not within {limit} s: {what}")
        time.sleep(POLL)


def ready(member: Member) -> bool:
    try:
        return httpx.get(f"{member.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def tunnel_at(http: httpx.Client, rid: int, host: str) -> bool:
    """acquire_worker names ``host`` and the job's tunnel there gives the sshd's banner."""
    try:
        answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker")
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    addr = answer.json()["Addr"]
    return addr["IP"] == host and banner(addr["IP"], addr["Port"], 2).startswith(SSH_BANNER)


def leader_told(http: httpx.Client, follower: Member) -> bool:
    """The leader no longer counts any link as the follower's."""
    text = http.get("/metrics").text
    return f'boruta_link_holder_links{{holder="http://{follower.host}' not in text


def one_round(tmp: Path, pg: PgCluster, dryads: int, sshd_port: int) -> list[float]:
    """A fresh farm whose follower holds every link; the seconds from its SIGKILL to the
    end of each phase."""
    tmp.mkdir(parents=True)
    group = Group(tmp, pg.url(pg.create_database()), count=2, config="follower_link = true\n")
    try:
        leader = group.start_first()
        follower = group.members[1]
        group.start(follower)
        until(lambda: follower.standby() and ready(follower), 60, "the follower ready")
        for n in range(dryads):
            group.dryad(n, DEVICE, sshd_port, to=[follower, leader])
        with group.http(leader) as http:
            until(
                lambda: (
                    len(ws := group.workers(leader)) == dryads and all(w["Connected"] for w in ws)
                ),
                120,
                "dryads registered through the follower",
            )
            for w in group.workers(leader):
                http.post(
                    f"/api/v1/workers/{w['WorkerUUID']}/setstate", json={"WorkerState": "IDLE"}
                )
            until(lambda: all(w["State"] == "IDLE" for w in group.workers(leader)), 60, "IDLE")
            rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": DEVICE}}).json()["ReqID"]
            until(lambda: tunnel_at(http, rid, follower.host), 60, "the tunnel on the follower")
            killed = time.monotonic()
            follower.kill()
            marks = []
            until(lambda: leader_told(http, follower), 60, "the leader told")
            marks.append(time.monotonic())
            until(lambda: all(group.linked_to(leader)), 120, "dryads re-linked")
            marks.append(time.monotonic())
            until(lambda: tunnel_at(http, rid, leader.host), 120, "the tunnel on the leader")
            marks.append(time.monotonic())
        return [m - killed for m in marks]
    finally:
        group.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dryads", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-follower-failover-"))
    sshd = start_sshd(tmp / "sshd", "brt-nobody")
    try:
        with private_cluster() as pg:
            print(f"follower failover, {args.dryads} dryads, seconds from SIGKILL:")
            print("round  " + "  ".join(f"{p:>16}" for p in PHASES))
            results = []
            for n in range(args.rounds):
                times = one_round(tmp / f"round-{n + 1}", pg, args.dryads, sshd.port)
                results.append(times)
                print(f"{n + 1:>5}  " + "  ".join(f"{t:16.2f}" for t in times), flush=True)
        for i, phase in enumerate(PHASES):
            values = [r[i] for r in results]
            print(
                f"{phase:>16}: min {min(values):.2f}  median {statistics.median(values):.2f}"
                f"  max {max(values):.2f} s"
            )
        worst = max(r[-1] for r in results)
        met = "met" if worst <= GOAL else "NOT met"
        print(f"goal: a working tunnel within {GOAL:.0f} s (worst {worst:.2f} s): {met}")
    finally:
        sshd.stop()
        if args.keep:
            print(f"logs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
