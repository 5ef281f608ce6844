"""Job cycles per second, side by side in one run: one coordinator on a SQLite file, one on
PostgreSQL, three on one PostgreSQL database with all the load sent to the leader, the
same three with the load spread over all three (the followers forward their share to the
leader), and two diagnostic ones on PostgreSQL: without the per-write fencing check, and
without the connection pool's ping at each checkout. Every system is up for the whole run
and the cycles run in short chunks, system after system in a rotating order, so that load
from elsewhere on a shared machine falls on all of them alike.

Prints cycles/s, CPU seconds per cycle of every coordinator process and of the PostgreSQL
server, the commit path's busy share, what the coordinators' database sessions did
(pg_stat_activity, sampled: the share spent waiting for a lock), the ratios, and what a
write transaction sends to PostgreSQL. Each coordinator is a real ``boruta-coordinator
--db … serve`` process (``cli.main``: the serving lock, standby, fencing, the lease
watcher) with simulated workers whose dryads answer at once (bench/_coordinators_serve.py
says what differs from the product).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _common import BENCH, READY, Process, add_user, free_port
from _coordinators_load import Lanes, tree_cpu, used
from _coordinators_pg import Cluster, Statements, WaitSampler, private_cluster, write_transactions
from _coordinators_report import (
    Chunk,
    Results,
    System,
    ratio_line,
    report,
    statements_report,
)

from coordinator.settings import Settings
from coordinator.store.sql import SqlStore

STANDBY = re.compile(rb"standby: coordinator ")
FOLLOWING = re.compile(rb"follower ready on http://([\d.]+):(\d+)")
COMMITS = re.compile(rb"^COMMITS (\d+) ([\d.]+) ([\d.]+) (\d+)$", re.MULTILINE)

# _coordinators_serve.py's diagnostics
NO_FENCING, NO_PING, PIPELINE = ("--no-fencing",), ("--no-pre-ping",), ("--pipeline-commit",)
SYSTEMS = (
    System("sqlite", "1 coordinator, SQLite", postgres=False),
    System("pg", "1 coordinator, PostgreSQL", postgres=True),
    System("pg3", "3 coordinators, one PostgreSQL (the leader gets all the load)", True, 3),
    System(
        "pg3s",
        "3 coordinators, one PostgreSQL, the load spread (lanes through each in turn)",
        True,
        3,
        spread=True,
    ),
    System("nofence", "[diag] 1 coordinator, PostgreSQL, no fencing check", True, 1, NO_FENCING),
    System("noping", "[diag] 1 coordinator, PostgreSQL, no pre-ping", True, 1, NO_PING),
    System(
        "pipeline",
        "[diag] 1 coordinator, PostgreSQL, stop 24's pipelined commit",
        True,
        1,
        PIPELINE,
    ),
)


@dataclass
class Up:
    """A system's coordinators, running on a database of their own."""

    system: System
    database: str  # the SQLite file, or the PostgreSQL database's name
    procs: list[Process]  # the serving one first
    lanes: Lanes
    asked: int = 0  # commit clock readings asked for so far
    results: Results = field(init=False)

    def __post_init__(self) -> None:
        self.results = Results(self.system)

    def commit_clock(self) -> tuple[int, float, float, int]:
        """Ask the serving coordinator for its commit counters (SIGUSR1) and wait for them."""
        self.asked += 1
        serving = self.procs[0]
        serving.popen.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = COMMITS.findall(serving.output())
            if len(found) >= self.asked:
                count, seconds, cpu, trips = found[self.asked - 1]
                return int(count), float(seconds), float(cpu), int(trips)
            time.sleep(0.001)
        raise RuntimeError(f"no COMMITS line in {serving.log}")


def _serve_argv(db: str, config: Path, workers: int, diagnostic: tuple[str, ...]) -> list[str]:
    ours = [sys.executable, str(BENCH / "_coordinators_serve.py"), "--workers", str(workers)]
    serve = ["serve", "--http", f"127.0.0.1:{free_port()}"]
    return [*ours, *diagnostic, "--", "--db", db, "--config", str(config), *serve]


def _config(tmp: Path, system: System, n: int) -> Path:
    """A settings file with a tunnel range of the coordinator's own: the systems serve side
    by side on this host, and a range claimed twice is refused
    (docs/failover.md §tunnel range claim). The followers hold no dryad links: the bench's
    workers are simulated inside the leader (bench/_coordinators_serve.py)."""
    first = 30000 + 100 * [s.key for s in SYSTEMS].index(system.key) + 30 * n
    config = tmp / f"{system.key}-{n + 1}.toml"
    config.write_text(f'tunnel_ports = "{first}-{first + 29}"\nfollower_link = false\n')
    return config


def _forwarding(host: str, port: int, timeout: float = 60) -> None:
    """Wait until a follower's ``/healthz`` says it can forward (it knows the leader)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the follower on {host}:{port} is not ready")
        time.sleep(0.05)


def start(system: System, tmp: Path, cluster: Cluster, args: argparse.Namespace) -> Up:
    """Make the system's database and start its coordinators: the serving one first, then
    the standbys, each waited for."""
    if system.postgres:
        cluster.create_database(system.key)
        db = cluster.url(system.key)
    else:
        db = str(tmp / f"{system.key}.db")
    store = SqlStore.open(db)
    store.migrate()
    token = add_user(store, "bench")
    store.close()
    procs: list[Process] = []
    addresses: list[tuple[str, int]] = []
    try:
        for n in range(system.coordinators):
            argv = _serve_argv(db, _config(tmp, system, n), args.workers, system.diagnostic)
            procs.append(Process(argv, tmp / f"{system.key}-{n + 1}.log"))
            if n == 0:
                found = procs[0].wait_for(READY, timeout=300)
                addresses.append((found[1].decode(), int(found[2])))
            elif system.spread:
                found = procs[-1].wait_for(FOLLOWING, timeout=120)
                addresses.append((found[1].decode(), int(found[2])))
                _forwarding(*addresses[-1])
            else:
                procs[-1].wait_for(STANDBY, timeout=120)
    except BaseException:
        stop(procs)
        raise
    lanes = Lanes(addresses, token, args.concurrency)
    return Up(system, system.key if system.postgres else db, procs, lanes)


def stop(procs: list[Process]) -> None:
    for proc in reversed(procs):  # standbys first, so that none takes over
        proc.stop()


async def chunk(
    up: Up,
    count: int,
    cluster: Cluster,
    sampler: WaitSampler,
    statements: list[Statements] | None = None,
) -> Chunk:
    """``count`` cycles on ``up``, with every reading taken just before and just after."""
    pg = up.system.postgres
    postmaster = cluster.postmaster()
    leave_out = frozenset({sampler.backend})

    def read() -> tuple[list[dict[int, float]], dict[int, float], tuple[int, float, float, int]]:
        return (
            [tree_cpu(p.popen.pid) for p in up.procs],
            tree_cpu(postmaster, leave_out) if pg else {},
            up.commit_clock(),
        )

    if statements is not None:
        cluster.log_statements(True)
        log_from = cluster.log.stat().st_size
    before = read()
    if pg:
        sampler.start(up.database)
    cycles = await up.lanes.cycles(count)
    waits = sampler.stop() if pg else None
    after = read()
    if statements is not None:
        cluster.log_statements(False)
        with cluster.log.open("rb") as log:
            log.seek(log_from)
            statements.append(write_transactions(log.read().decode(errors="replace")))
    # Connections left idle while the other systems run would outlive the server's
    # keep-alive timeout: each chunk opens its own.
    await up.lanes.close()
    return Chunk(
        cycles,
        [used(b, a) for b, a in zip(before[0], after[0], strict=True)],
        used(before[1], after[1]),
        after[2][0] - before[2][0],
        after[2][1] - before[2][1],
        after[2][2] - before[2][2],
        after[2][3] - before[2][3],
        waits,
    )


async def measure(ups: list[Up], cluster: Cluster, args: argparse.Namespace) -> list[Statements]:
    sampler = WaitSampler(cluster, 1 / args.sample_hz)
    try:
        for up in ups:
            await up.lanes.warm_up(50)
            await up.lanes.close()
        size = -(-args.cycles // args.chunks)
        for n in range(args.chunks):
            order = ups[n % len(ups) :] + ups[: n % len(ups)]
            for up in order:
                up.results.chunks.append(await chunk(up, size, cluster, sampler))
            if (n + 1) % max(1, args.chunks // 10) == 0:
                shown = "  ".join(f"{u.system.key} {u.results.chunks[-1].rate:.0f}" for u in ups)
                print(f"  chunk {n + 1}/{args.chunks}, cycles/s: {shown}", flush=True)
        logged: list[Statements] = []
        pg = [u for u in ups if u.system.key == "pg"]
        if not args.skip_diagnostic and pg:
            # Apart from the measured chunks: logging every statement slows the server.
            await chunk(pg[0], min(size, 200), cluster, sampler, logged)
        return logged
    finally:
        sampler.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=2000, help="measured cycles per system")
    parser.add_argument("--chunks", type=int, default=20, help="chunks the cycles run in")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8, help="cycles in flight at once")
    parser.add_argument(
        "--sample-hz", type=float, default=50, help="pg_stat_activity samples per second"
    )
    parser.add_argument(
        "--skip-diagnostic",
        action="store_true",
        help="no diagnostic systems (no fencing check, no pre-ping, stop 24's commit), "
        "no statement log",
    )
    parser.add_argument(
        "--systems",
        default=",".join(s.key for s in SYSTEMS),
        help="the systems to run, by key (default: all of them)",
    )
    args = parser.parse_args()
    if args.concurrency > args.workers:
        parser.error("--concurrency must not exceed --workers (each cycle holds a board)")
    if min(args.cycles, args.chunks, args.concurrency) < 1 or args.sample_hz <= 0:
        parser.error("--cycles, --chunks, --concurrency and --sample-hz must be positive")
    if args.cycles < args.chunks:
        parser.error("--cycles must be at least --chunks")
    keys = args.systems.split(",")
    if unknown := set(keys) - {s.key for s in SYSTEMS}:
        parser.error(f"no system {', '.join(sorted(unknown))}: {', '.join(s.key for s in SYSTEMS)}")
    systems = [s for s in SYSTEMS if s.key in keys and not (s.diagnostic and args.skip_diagnostic)]
    size = -(-args.cycles // args.chunks)
    print(
        f"job cycles (Ed25519 keys): {size * args.chunks} per system in {args.chunks} chunks "
        f"of {size}, the systems in turn in a rotating order; {args.workers} workers, "
        f"{args.concurrency} cycles in flight; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at start"
    )
    ups: list[Up] = []
    with tempfile.TemporaryDirectory(prefix="bench-coordinators-") as name:
        tmp = Path(name)
        with private_cluster(tmp) as cluster:
            print(f"PostgreSQL: private cluster on 127.0.0.1:{cluster.port}, {cluster.settings()}")
            print(
                f"SQLite: sqlite_sync={Settings().sqlite_sync} (the default), WAL; the file "
                "and the cluster on the same disk"
            )
            try:
                for system in systems:
                    # one by one: those started are stopped if a later one fails
                    ups.append(start(system, tmp, cluster, args))  # noqa: PERF401
                logged = asyncio.run(measure(ups, cluster, args))
            finally:
                for up in ups:
                    stop(up.procs)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    results = {up.system.key: up.results for up in ups}
    for done in results.values():
        print(report(done))
    print(
        "\n3x, leader: all the load goes to the leader; the followers poll the serving lock "
        "every 0.5 s. 3x, spread: lane n goes through coordinator n mod 3, so two thirds of "
        "the requests reach the leader forwarded by a follower, all on the same cores."
    )
    ratios = (
        ("1x PostgreSQL / 1x SQLite", "pg", "sqlite", 0.7),
        ("3x, leader / 1x PostgreSQL", "pg3", "pg", 0.8),
        ("3x, spread / 1x PostgreSQL", "pg3s", "pg", 0.8),
        ("1x PostgreSQL / same without fencing [diag]", "pg", "nofence", None),
        ("1x PostgreSQL / same without pre-ping [diag]", "pg", "noping", None),
        ("1x PostgreSQL / same, stop 24's commit [diag]", "pg", "pipeline", None),
        ("stop 24's commit on PostgreSQL / 1x SQLite [diag]", "pipeline", "sqlite", None),
    )
    for label, top, bottom, goal in ratios:
        if top in results and bottom in results:
            print(ratio_line(label, results[top], results[bottom], goal))
    for found in logged:
        print(statements_report(found))


if __name__ == "__main__":
    main()
