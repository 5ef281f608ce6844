"""What bench/coordinators.py measured in each chunk, and its report: per system, and the
ratios between systems chunk by chunk."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from _common import percentile
from _coordinators_load import Cycles
from _coordinators_pg import Statements, Waits


@dataclass(frozen=True)
class System:
    key: str
    title: str
    postgres: bool
    coordinators: int = 1
    diagnostic: tuple[str, ...] = ()  # bench/_coordinators_serve.py's diagnostic flags
    spread: bool = False  # the lanes go through every coordinator, not the serving one only


@dataclass
class Chunk:
    """One system's share of one chunk: its cycles and what they cost."""

    cycles: Cycles
    coordinator_cpu: list[float]  # CPU seconds of each coordinator process tree (serving first)
    server_cpu: float  # CPU seconds of the PostgreSQL server's processes (0 on SQLite)
    commits: int
    commit_seconds: float  # wall seconds in the store's commit
    commit_cpu: float  # of those, CPU seconds of the committing thread
    commit_trips: int  # psycopg's waits on the server's socket in those commits (0 on SQLite)
    waits: Waits | None  # PostgreSQL only

    @property
    def rate(self) -> float:
        return self.cycles.count / self.cycles.elapsed


@dataclass
class Results:
    system: System
    chunks: list[Chunk] = field(default_factory=list)

    def total(self, what: str) -> float:
        return float(sum(getattr(c, what) for c in self.chunks))

    @property
    def cycles(self) -> int:
        return sum(c.cycles.count for c in self.chunks)

    @property
    def elapsed(self) -> float:
        return sum(c.cycles.elapsed for c in self.chunks)

    @property
    def rate(self) -> float:
        return self.cycles / self.elapsed


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _waits(results: Results) -> list[str]:
    found = [c.waits for c in results.chunks if c.waits is not None]
    if not found:
        return ["    database locks  none to wait for: one process, SQLite's own write lock"]
    total = Waits()
    for w in found:
        total.samples += w.samples
        total.seconds += w.seconds
        total.busy.update(w.busy)
    kinds = ", ".join(f"{kind} {n / total.busy_total:.1%}" for kind, n in total.busy.most_common(6))
    per_sample = total.busy_total / total.samples if total.samples else 0.0
    rate = total.samples / total.seconds if total.seconds else 0.0
    return [
        f"    database locks  {total.share('Lock:'):.2%} of the coordinators' busy "
        "session-samples waited for a lock (wait_event_type Lock)",
        f"    sessions busy   {per_sample:.2f} on average, {total.samples} samples "
        f"({rate:.0f}/s); what they did: {kinds or 'nothing'}",
    ]


def report(results: Results) -> str:
    chunks, n = results.chunks, results.cycles
    rates = [c.rate for c in chunks]
    serving = sum(c.coordinator_cpu[0] for c in chunks) / n
    standbys = [
        sum(c.coordinator_cpu[i] for c in chunks) / n for i in range(1, results.system.coordinators)
    ]
    other = "follower (forwarding)" if results.system.spread else "standby"
    server = results.total("server_cpu") / n
    everything = serving + sum(standbys) + server
    latencies = [t for c in chunks for t in c.cycles.latencies]
    commits = results.total("commits")
    commit_seconds = results.total("commit_seconds")
    lines = [
        f"== {results.system.title}",
        f"    cycles/s        {results.rate:.1f} over all chunks; per chunk median "
        f"{statistics.median(rates):.1f}, min {min(rates):.1f}, max {max(rates):.1f}",
        f"    per cycle       p50 {_ms(percentile(latencies, 50))} ms, "
        f"p99 {_ms(percentile(latencies, 99))} ms",
        f"    CPU ms/cycle    serving coordinator {_ms(serving)}"
        + "".join(f", {other} {i + 1} {_ms(s)}" for i, s in enumerate(standbys))
        + (f", PostgreSQL server {_ms(server)}" if results.system.postgres else "")
        + f"; all {_ms(everything)}",
        f"    load generator  {_ms(sum(c.cycles.client_cpu for c in chunks) / n)} ms "
        "CPU/cycle (not in the above)",
        f"    commits         {commits / n:.2f} per cycle, {_ms(commit_seconds / commits)} ms "
        f"each; the commit path was busy {commit_seconds / results.elapsed:.0%} of the time"
        + (
            f"; {results.total('commit_trips') / commits:.2f} waits on the server's socket "
            "each (sends and replies)"
            if results.system.postgres
            else ""
        ),
        "    in a commit     the committing thread was on a CPU "
        f"{results.total('commit_cpu') / commit_seconds:.0%} of the time; the rest it waited "
        "(for the database, the disk, the GIL or a core)",
        *_waits(results),
        f"    bounds          the serving process alone on a core: {1 / serving:.0f} cycles/s "
        f"(1 / its CPU per cycle); one commit at a time at this grouping: "
        f"{n / commit_seconds:.0f} cycles/s (groups grow with the load)",
    ]
    return "\n".join(lines)


def ratio_line(label: str, top: Results, bottom: Results, goal: float | None) -> str:
    """The ratio of cycles/s, chunk by chunk (each chunk ran every system, one after the
    other, so a chunk's pair saw about the same load from elsewhere), and over all."""
    ratios = sorted(t.rate / b.rate for t, b in zip(top.chunks, bottom.chunks, strict=True))
    median = statistics.median(ratios)
    verdict = ""
    if goal is not None:
        verdict = f"  goal >= {goal}: {'MET' if median >= goal else 'NOT MET'}"
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return (
        f"{label:<44} {median:.2f}x per chunk (median; quartiles {quartiles[0]:.2f}-"
        f"{quartiles[2]:.2f}), {top.rate / bottom.rate:.2f}x over all{verdict}"
    )


def statements_report(found: Statements) -> str:
    """What a write transaction of one coordinator on PostgreSQL sends, statement by
    statement, and in how many messages (round trips)."""
    if not found.transactions:
        return "[diag] no write transaction found in the statement log"
    lines = [
        f"[diag] {found.transactions} write transactions of 1 coordinator on PostgreSQL "
        f"(log_statement = all, a chunk of its own): {statistics.mean(found.sizes):.1f} "
        f"statements in {statistics.mean(found.messages):.2f} messages each (a message is "
        "a round trip: docs/failover.md §round trips); statements per transaction:"
    ]
    lines += [f"    {n / found.transactions:5.2f}  {kind}" for kind, n in found.kinds.most_common()]
    return "\n".join(lines)
