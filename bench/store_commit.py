"""The SQLite commit's CPU: what the committer's thread spends per commit of a job cycle.

Job cycles (create → acquire, waiting for the match → close, Ed25519 keys) run through the
service in this process, with W workers, L lanes and a recording store; no HTTP. Then the
commits recorded are replayed on a fresh SQLite file (``sqlite_sync`` FULL, the default;
the serving lock held, as ``boruta-coordinator serve`` holds it) R times, interleaved with
their row building alone, and the thread's CPU (``time.thread_time``) is printed: per
commit, and per job cycle at the commits a cycle made. A diagnostic for the commit
thread's share of ``job_cycle.py``'s server CPU, without a goal of its own; see
docs/architecture.md §the commit on SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import anyio
from _common import BOARD_CAPS
from _cycle_server import FixedKeys, InstantDryads, register_workers

from coordinator.assembly import Parts, assemble
from coordinator.domain.model import KeyType, User
from coordinator.service.interfaces import Dryads
from coordinator.settings import Settings
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit import request_row, transition_row, worker_row

USER = User("bench")


async def _cycles(
    store: SqlStore, cycles: int, workers: int, lanes: int, registered: Callable[[], None]
) -> None:
    settings = Settings(log_level="WARNING")
    dryads = cast("Dryads", InstantDryads())
    coordinator = assemble(settings, Parts(store=store, dryads=dryads, keys=FixedKeys()))
    service = coordinator.service
    left = iter(range(cycles))

    async def lane() -> None:
        for _ in left:
            rid = await service.new_request(USER, 8, BOARD_CAPS, key_type=KeyType.ED25519)
            await service.acquire_worker(USER, rid, wait=60)
            await service.close_request(USER, rid)

    async with coordinator.running():
        await register_workers(service, workers)
        registered()
        async with anyio.create_task_group() as tg:
            for _ in range(lanes):
                tg.start_soon(lane)


def record(cycles: int, workers: int, lanes: int) -> tuple[list[Changes], int]:
    """The changes of every commit the cycles made, and how many came before the cycles."""
    seen: list[Changes] = []
    setup = 0

    def registered() -> None:
        nonlocal setup
        setup = len(seen)

    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore.open(Path(tmp) / "record.db")
        commit = store.commit

        def recording(changes: Changes) -> list[Numbered]:
            seen.append(changes)
            return commit(changes)

        store.commit = recording  # type: ignore[method-assign]
        try:
            store.migrate()
            anyio.run(_cycles, store, cycles, workers, lanes, registered)
        finally:
            store.close()
    return seen, setup


def replay(commits: list[Changes], warm: list[Changes]) -> float:
    """CPU seconds of this thread per commit, on a fresh file that holds ``warm``."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore.open(Path(tmp) / "replay.db")
        try:
            store.claim_serving("bench")  # as `boruta-coordinator serve` does
            store.migrate()
            for changes in warm:
                store.commit(changes)
            started = time.thread_time()
            for changes in commits:
                store.commit(changes)
            return (time.thread_time() - started) / len(commits)
        finally:
            store.close()


def rows_only(commits: list[Changes]) -> float:
    """CPU seconds per commit of building its rows, without the database."""
    started = time.thread_time()
    for changes in commits:
        for build, records in (
            (request_row, changes.requests),
            (worker_row, changes.workers),
            (transition_row, changes.transitions),
        ):
            for one in records:
                cast("Callable[[object], object]", build)(one)
    return (time.thread_time() - started) / len(commits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    # Three lanes make commits the size the HTTP bench makes them (job_cycle.py, 8 lanes):
    # about 3 requests, 5 workers and 9 transitions; more lanes group more per commit.
    parser.add_argument("--lanes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    recorded, setup = record(args.cycles, args.workers, args.lanes)
    warm, commits = recorded[: setup + 20], recorded[setup + 20 :]
    per_cycle = len(recorded[setup:]) / args.cycles
    sizes = {
        "requests": sum(len(c.requests) for c in commits) / len(commits),
        "workers": sum(len(c.workers) for c in commits) / len(commits),
        "transitions": sum(len(c.transitions) for c in commits) / len(commits),
        "charges": sum(len(c.charges) for c in commits) / len(commits),
    }
    print(
        f"{len(commits)} commits replayed ({per_cycle:.2f} a cycle); rows per commit: "
        + ", ".join(f"{name} {n:.1f}" for name, n in sizes.items())
    )
    commit_cpu: list[float] = []
    row_cpu: list[float] = []
    for _ in range(args.rounds):
        commit_cpu.append(replay(commits, warm))
        row_cpu.append(rows_only(commits))
    each = statistics.median(commit_cpu) * 1e6
    rows = statistics.median(row_cpu) * 1e6
    spread = ", ".join(f"{c * 1e6:.0f}" for c in commit_cpu)
    print(f"commit thread CPU: {each:.0f} µs per commit (median of {spread})")
    print(f"  of which building rows: {rows:.0f} µs")
    print(f"  per job cycle: {each * per_cycle / 1000:.3f} ms")


if __name__ == "__main__":
    main()
