"""Job cycles per second, in one run with interleaved rounds: one coordinator on a SQLite
file, one on PostgreSQL, three on one PostgreSQL database (one serves, two stand by), and a
diagnostic PostgreSQL run without the per-write fencing check. Prints cycles/s, CPU seconds
per cycle of every coordinator process and of the PostgreSQL server, the commit path's busy
share, and what the coordinators' database sessions waited for (sampled).

Each coordinator is a real ``boruta-coordinator --db … serve`` process (``cli.main``: the
serving lock, standby, fencing, the lease watcher) with simulated workers whose dryads
answer at once (bench/_coordinators_serve.py says what differs from the product).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import BENCH, READY, Process, add_user, free_port, percentile
from _coordinators_load import Cycles, cycles, tree_cpu, used
from _coordinators_pg import Cluster, Waits, WaitSampler, private_cluster

from coordinator.settings import Settings
from coordinator.store.sql import SqlStore

STANDBY = re.compile(rb"standby: coordinator ")
COMMITS = re.compile(rb"^COMMITS (\d+) ([\d.]+) ([\d.]+)$", re.MULTILINE)


@dataclass(frozen=True)
class System:
    key: str
    title: str
    postgres: bool
    coordinators: int = 1
    fencing: bool = True


SYSTEMS = (
    System("sqlite", "1 coordinator, SQLite", postgres=False),
    System("pg", "1 coordinator, PostgreSQL", postgres=True),
    System("pg3", "3 coordinators, one PostgreSQL (1 serves, 2 stand by)", True, 3),
    System("nofence", "[diag] 1 coordinator, PostgreSQL, no fencing check", True, fencing=False),
)


@dataclass
class Round:
    """One system's measured window."""

    cycles: Cycles
    coordinator_cpu: list[float]  # CPU seconds of each coordinator process tree (serving first)
    server_cpu: float  # CPU seconds of the PostgreSQL server's processes (0 on SQLite)
    commits: int
    commit_seconds: float  # wall seconds in the store's commit
    commit_cpu: float  # of those, CPU seconds of the committing thread
    waits: Waits | None


@dataclass
class Results:
    system: System
    rounds: list[Round] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r.cycles.rate for r in self.rounds]

    def rate(self) -> float:
        return statistics.median(self.rates())


def _serve_argv(db: str, workers: int, fencing: bool) -> list[str]:
    port = free_port()
    ours = [sys.executable, str(BENCH / "_coordinators_serve.py"), "--workers", str(workers)]
    if not fencing:
        ours.append("--no-fencing")
    return [*ours, "--", "--db", db, "serve", "--http", f"127.0.0.1:{port}"]


def _commit_clock(proc: Process, asked: list[int]) -> tuple[int, float, float]:
    """Ask the serving coordinator for its commit counters (SIGUSR1) and wait for them."""
    asked[0] += 1
    proc.popen.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = COMMITS.findall(proc.output())
        if len(found) >= asked[0]:
            count, seconds, cpu = found[asked[0] - 1]
            return int(count), float(seconds), float(cpu)
        time.sleep(0.002)
    raise RuntimeError(f"no COMMITS line from {proc.log}")


@dataclass
class Reading:
    coordinators: list[dict[int, float]]  # each coordinator's process tree, serving first
    server: dict[int, float]  # the PostgreSQL server's processes (empty on SQLite)
    commits: tuple[int, float, float]  # the serving coordinator's commit clock (serve.py)


def run_system(
    system: System,
    tmp: Path,
    cluster: Cluster | None,
    n: int,
    args: argparse.Namespace,
) -> Round:
    """Start the system's coordinators on a new database, run the cycles, stop them."""
    name = f"{system.key}_{n}"
    pg = cluster if system.postgres else None
    if pg is not None:
        pg.create_database(name)
        db = pg.url(name)
    else:
        db = str(tmp / f"{name}.db")
    store = SqlStore.open(db)
    store.migrate()
    token = add_user(store, "bench")
    store.close()
    procs: list[Process] = []
    sampler = WaitSampler(pg, 1 / args.sample_hz) if pg is not None else None
    readings: list[Reading] = []
    try:
        serving = Process(_serve_argv(db, args.workers, system.fencing), tmp / f"{name}-a.log")
        procs.append(serving)
        found = serving.wait_for(READY, timeout=300)
        for letter in "bcdefgh"[: system.coordinators - 1]:
            argv = _serve_argv(db, args.workers, system.fencing)
            procs.append(Process(argv, tmp / f"{name}-{letter}.log"))
            procs[-1].wait_for(STANDBY, timeout=120)
        postmaster = pg.postmaster() if pg is not None else None
        leave_out = frozenset({sampler.backend}) if sampler is not None else frozenset()
        asked = [0]

        def read() -> None:
            readings.append(
                Reading(
                    [tree_cpu(p.popen.pid) for p in procs],
                    tree_cpu(postmaster, leave_out) if postmaster else {},
                    _commit_clock(serving, asked),
                )
            )

        def begin() -> None:
            read()
            if sampler is not None:
                sampler.start()

        waits: list[Waits] = []

        def end() -> None:
            if sampler is not None:
                waits.append(sampler.stop())
            read()

        host, port = found[1].decode(), int(found[2])
        measured = asyncio.run(cycles(host, port, token, args.cycles, args.concurrency, begin, end))
    finally:
        for proc in reversed(procs):  # standbys first, so that none takes over
            proc.stop()
        if sampler is not None:
            sampler.close()
        if pg is not None:
            pg.drop_database(name)
    first, last = readings
    return Round(
        measured,
        [used(b, a) for b, a in zip(first.coordinators, last.coordinators, strict=True)],
        used(first.server, last.server),
        last.commits[0] - first.commits[0],
        last.commits[1] - first.commits[1],
        last.commits[2] - first.commits[2],
        waits[0] if waits else None,
    )


# ---- the report -----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    shown = " ".join(fmt.format(v) for v in values)
    return f"median {fmt.format(statistics.median(values))}, min {fmt.format(min(values))}" + (
        f" (rounds: {shown})"
    )


def _waits_line(rounds: list[Round]) -> str:
    waits = [r.waits for r in rounds if r.waits is not None]
    if not waits:
        return "    database locks  none to wait for: one process, SQLite's own write lock"
    total = Waits()
    for w in waits:
        total.samples += w.samples
        total.seconds += w.seconds
        total.busy.update(w.busy)
    lock = [w.share("Lock:") * 100 for w in waits]
    kinds = ", ".join(
        f"{kind} {n / total.busy_total * 100:.1f}%" for kind, n in total.busy.most_common(6)
    )
    per_sample = total.busy_total / total.samples if total.samples else 0.0
    return (
        f"    database locks  {_spread(lock, '{:.2f}%')} of the coordinators' busy "
        "session-samples waited for a lock (wait_event_type Lock)"
        f"\n    sessions busy   {per_sample:.2f} on average in {total.samples} samples "
        f"({total.samples / total.seconds:.0f}/s); what they did: {kinds or 'nothing'}"
    )


def report(results: Results) -> str:
    rounds = results.rounds
    serving = [r.coordinator_cpu[0] / r.cycles.count for r in rounds]
    standbys = [
        statistics.median(r.coordinator_cpu[i] / r.cycles.count for r in rounds)
        for i in range(1, results.system.coordinators)
    ]
    server = [r.server_cpu / r.cycles.count for r in rounds]
    total = [(sum(r.coordinator_cpu) + r.server_cpu) / r.cycles.count for r in rounds]
    client = [r.cycles.client_cpu / r.cycles.count for r in rounds]
    p50 = statistics.median(percentile(r.cycles.latencies, 50) for r in rounds)
    p99 = statistics.median(percentile(r.cycles.latencies, 99) for r in rounds)
    commits = [r.commits / r.cycles.count for r in rounds]
    each = [r.commit_seconds / r.commits for r in rounds if r.commits]
    busy = [r.commit_seconds / r.cycles.elapsed * 100 for r in rounds]
    cpu = [r.commit_cpu / r.commit_seconds * 100 for r in rounds if r.commit_seconds]
    lines = [
        f"== {results.system.title}",
        f"    cycles/s        {_spread(results.rates())}",
        f"    per cycle       p50 {_ms(p50)} ms, p99 {_ms(p99)} ms (medians over rounds)",
        "    CPU ms/cycle    serving coordinator "
        + _ms(statistics.median(serving))
        + "".join(f", standby {i + 1} {_ms(s)}" for i, s in enumerate(standbys))
        + (
            f", PostgreSQL server {_ms(statistics.median(server))}"
            if results.system.postgres
            else ""
        )
        + f"; all {_ms(statistics.median(total))}",
        f"    load generator  {_ms(statistics.median(client))} ms CPU/cycle (not in the above)",
        f"    commits         {statistics.median(commits):.2f} per cycle, "
        f"{_ms(statistics.median(each))} ms each; the commit path was busy "
        f"{_spread(busy, '{:.0f}%')} of the wall time",
        f"    in a commit     the committing thread ran on a CPU {statistics.median(cpu):.0f}% "
        "of the time; the rest it waited (database, disk, the GIL, a core)",
        _waits_line(rounds),
    ]
    return "\n".join(lines)


def ratio_line(label: str, top: Results, bottom: Results, goal: float | None) -> str:
    """The ratio of cycles/s, round by round (each round ran both, one after the other)."""
    ratios = [t / b for t, b in zip(top.rates(), bottom.rates(), strict=True)]
    median = statistics.median(ratios)
    verdict = ""
    if goal is not None:
        verdict = f"  goal >= {goal}: {'MET' if median >= goal else 'NOT MET'}"
    shown = " ".join(f"{r:.2f}" for r in ratios)
    return f"{label:<40} {median:.2f}x  (min {min(ratios):.2f}; rounds: {shown}){verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000, help="measured cycles per system")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; systems interleaved")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8, help="cycles in flight at once")
    parser.add_argument(
        "--sample-hz", type=float, default=50, help="pg_stat_activity samples per second"
    )
    parser.add_argument(
        "--skip-diagnostic", action="store_true", help="no run without the fencing check"
    )
    args = parser.parse_args()
    if args.concurrency > args.workers:
        parser.error("--concurrency must not exceed --workers (each cycle holds a board)")
    if args.rounds < 1 or args.cycles < 1 or args.sample_hz <= 0:
        parser.error("--rounds, --cycles and --sample-hz must be positive")
    systems = [s for s in SYSTEMS if s.fencing or not args.skip_diagnostic]
    print(
        f"job cycles (Ed25519 keys): N={args.cycles} per system and round, {args.rounds} "
        f"rounds, systems in a rotating order; {args.workers} workers, {args.concurrency} "
        f"in flight; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    results = {s.key: Results(s) for s in systems}
    with tempfile.TemporaryDirectory(prefix="bench-coordinators-") as name:
        tmp = Path(name)
        with private_cluster(tmp) as cluster:
            print(f"PostgreSQL: private cluster on 127.0.0.1:{cluster.port}, {cluster.settings()}")
            print(
                f"SQLite: sqlite_sync={Settings().sqlite_sync} (the default), WAL; the file "
                "and the cluster on the same disk"
            )
            for n in range(args.rounds):
                order = systems[n % len(systems) :] + systems[: n % len(systems)]
                for system in order:
                    got = run_system(system, tmp, cluster, n, args)
                    results[system.key].rounds.append(got)
                    print(
                        f"  round {n + 1}: {system.key:<8} {got.cycles.rate:7.1f} cycles/s",
                        flush=True,
                    )
    print()
    for done in results.values():
        print(report(done))
    print(
        "\nThe three coordinators' load goes through the serving one: standbys bind no port "
        "until they take over, and poll the serving lock every 0.5 s meanwhile."
    )
    print(ratio_line("1x PostgreSQL / 1x SQLite", results["pg"], results["sqlite"], 0.7))
    print(ratio_line("3x PostgreSQL / 1x PostgreSQL", results["pg3"], results["pg"], 0.8))
    if "nofence" in results:
        print(
            ratio_line(
                "1x PostgreSQL / same without fencing [diag]",
                results["pg"],
                results["nofence"],
                None,
            )
        )


if __name__ == "__main__":
    main()
