"""Failover time: SIGKILL of the active coordinator → a standby serves → its dryads re-linked
→ a running job's tunnel answers again (SSH banner) at the address acquire_worker gives.

Three coordinators on one private PostgreSQL database behind HAProxy (docs/examples/
haproxy.cfg), simulated dryads given every link address, default settings. Each round
kills the active coordinator, times the phases from the kill, and restarts the killed one
as a standby. ``--cold`` starts no standby ahead: the next coordinator is started only
after the kill (a person or systemd restarting one), for comparison.
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
from tests.e2e.several import Group, Member  # noqa: E402
from tests.e2e.test_job_access import start_sshd  # noqa: E402
from tests.pg_cluster import private_cluster  # noqa: E402

PHASES = ("serving", "behind haproxy", "dryads re-linked", "tunnel answers")
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


def tunnel_at(lb: httpx.Client, rid: int, host: str) -> bool:
    """acquire_worker through HAProxy names ``host`` and the tunnel there gives a banner."""
    try:
        answer = lb.post(f"/api/v1/reqs/{rid}/acquire_worker")
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    addr = answer.json()["Addr"]
    return addr["IP"] == host and banner(addr["IP"], addr["Port"], 2).startswith(SSH_BANNER)


def log_sizes(group: Group) -> list[int]:
    return [(home / "dryad.log").stat().st_size for home in group.dryad_homes]


def missed_rounds(group: Group, since: list[int]) -> int:
    """The dryads' failed rounds of dials since ``since`` (their logs' sizes then)."""
    return sum(
        (home / "dryad.log").read_bytes()[offset:].count(MISSED)
        for home, offset in zip(group.dryad_homes, since, strict=True)
    )


def one_round(
    group: Group, lb_url: str, lb: httpx.Client, rid: int, cold: bool
) -> tuple[list[float], int]:
    """Kill the active coordinator; the seconds from the kill to the end of each phase, and
    how many rounds of dials the dryads missed meanwhile."""
    dead = group.active()
    logs = log_sizes(group)
    killed = time.monotonic()
    dead.kill()
    if cold:
        group.start(next(m for m in group.members if m is not dead))
    until(lambda: any(m.serving() for m in group.members), 120, "a standby serving")
    new = group.active()
    marks = [time.monotonic()]
    until(lambda: lb_healthy(lb_url), 60, "haproxy sending to the new coordinator")
    marks.append(time.monotonic())
    until(lambda: all(group.linked_to(new)), 120, "dryads re-linked")
    marks.append(time.monotonic())
    until(lambda: tunnel_at(lb, rid, new.host), 120, "the tunnel answering")
    marks.append(time.monotonic())
    if not cold:  # (cold: the killed one is started at the next round's kill)
        group.start(dead)  # back, as a standby
        until(dead.standby, 60, f"{dead.name} standby")
    return [m - killed for m in marks], missed_rounds(group, logs)


def setup(group: Group, dryads: int, sshd_port: int, cold: bool) -> Member:
    first = group.start_first()
    if not cold:
        for m in group.members[1:]:
            group.start(m)
            until(m.standby, 60, f"{m.name} standby")
    for n in range(dryads):
        group.dryad(n, DEVICE, sshd_port)
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
    parser.add_argument("--cold", action="store_true", help="start the next one after the kill")
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    with private_cluster() as pg:
        group = Group(tmp, pg.url(pg.create_database()), count=2 if args.cold else 3)
        sshd = start_sshd(tmp / "sshd", "brt-nobody")
        proxy = None
        try:
            first = setup(group, args.dryads, sshd.port, args.cold)
            servers = [m.url.removeprefix("http://") for m in group.members]
            proxy = start_haproxy(tmp, f"127.0.0.1:{free_port()}", servers)
            headers = {"Authorization": f"Bearer {group.token}"}
            with httpx.Client(base_url=proxy.url, headers=headers, timeout=30) as lb:
                answer = lb.post("/api/v1/reqs/", json={"Caps": {"device_type": DEVICE}})
                rid = answer.json()["ReqID"]
                until(lambda: tunnel_at(lb, rid, first.host), 60, "the job's tunnel")
                mode = "cold start after the kill" if args.cold else "hot standby"
                print(f"failover ({mode}), {args.dryads} dryads, seconds from SIGKILL:")
                print("round  " + "  ".join(f"{p:>16}" for p in PHASES) + "  missed rounds")
                results = []
                for n in range(args.rounds):
                    times, missed = one_round(group, proxy.url, lb, rid, args.cold)
                    results.append(times)
                    line = "  ".join(f"{t:16.2f}" for t in times)
                    print(f"{n + 1:>5}  {line}  {missed:>13}", flush=True)
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
