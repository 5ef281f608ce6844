"""``boruta-coordinator`` for bench/coordinators.py: the real command line (``cli.main``:
serving lock, standby, fencing, lease watcher, database clock), with W simulated workers
whose dryads answer at once, and the store's commits timed.

    python bench/_coordinators_serve.py --workers 8 [--no-fencing] -- --db DB serve --http …

Two things differ from ``boruta-coordinator``, both here and nowhere in the product:
- the dryads are ``InstantDryads`` (bench/_cycle_server.py) instead of the SSH link, and the
  serving coordinator registers W workers through its service and puts them in service,
  then waits for the RSA key stock to fill, all before its ready line;
- ``SqlStore.commit`` is timed: on SIGUSR1 the process prints
  ``COMMITS <n> <seconds> <cpu> <waits>`` (commits so far, wall seconds spent in them, CPU
  seconds of the committing thread in them, and the times psycopg waited on the server's
  socket in them), so the bench can read the commit path over its measured window.
Diagnostics, to show what a part costs (the product has no such settings):
``--no-fencing`` leaves the epoch check out of every write; ``--no-pre-ping`` never pings a
pooled connection at checkout (the engine pings one that idled a second);
``--switch-interval`` sets the GIL's switch interval (``sys.setswitchinterval``);
``--pipeline-commit`` commits on PostgreSQL as until stop 24, in a psycopg pipeline
(bench/_pipeline_commit.py), to compare with the product's one-message commit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg  # noqa: TID251 - a diagnostic: it counts the driver's round trips
from _cycle_server import InstantDryads, register_workers, stock_filled
from _pipeline_commit import write_pipelined

import coordinator.assembly as assembly
import coordinator.store.sql as sql_module
from coordinator import cli
from coordinator.service.interfaces import Dryads
from coordinator.service.keys import KeyPool
from coordinator.settings import Settings
from coordinator.store import Changes, engine
from coordinator.store.records import Numbered
from coordinator.store.serving import ServingLock
from coordinator.store.sql import SqlStore
from coordinator.store.sql_commit_pg import write_postgresql


class CommitClock:
    """Commits so far and the wall seconds spent in them (commits run in worker threads)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.cpu = 0.0  # of those seconds, CPU time of the threads that committed
        self.trips = 0  # of those commits, the times psycopg waited for the server
        self._lock = threading.Lock()
        self.local = threading.local()  # ``trips``: this thread's, while it commits

    def add(self, seconds: float, cpu: float, trips: int) -> None:
        with self._lock:
            self.count += 1
            self.seconds += seconds
            self.cpu += cpu
            self.trips += trips

    def report(self, *_: object) -> None:
        # A signal handler in the main thread: no lock (a commit thread may hold it); a
        # reading torn between the fields is off by one commit at most. One write: the
        # log's writer thread shares the file, and print() under PYTHONUNBUFFERED sends
        # the line and its end apart.
        line = f"COMMITS {self.count} {self.seconds:.6f} {self.cpu:.6f} {self.trips}\n"
        os.write(sys.stdout.fileno(), line.encode())


def _time_commits(clock: CommitClock) -> None:
    """Time each commit, and count its round trips to PostgreSQL: every exchange with the
    server (a statement, a pipeline's sync, the commit) is one ``Connection.wait``."""
    real = SqlStore.commit

    def commit(self: SqlStore, changes: Changes) -> list[Numbered]:
        start, cpu = time.perf_counter(), time.thread_time()
        clock.local.trips = 0
        try:
            return real(self, changes)
        finally:
            trips, clock.local.trips = clock.local.trips, None
            clock.add(time.perf_counter() - start, time.thread_time() - cpu, trips)

    SqlStore.commit = commit  # type: ignore[method-assign]
    real_wait = psycopg.Connection.wait

    def wait(self: psycopg.Connection[Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(clock.local, "trips", None) is not None:
            clock.local.trips += 1
        return real_wait(self, *args, **kwargs)

    psycopg.Connection.wait = wait  # type: ignore[method-assign]


def _simulated_workers(workers: int) -> None:
    """Every coordinator this process assembles gets instant dryads and, once running,
    ``workers`` workers in service and a full RSA stock before it says it is ready."""
    real_assemble = assembly.assemble
    real_running = assembly.Coordinator.running
    pools: dict[int, KeyPool] = {}

    def assemble(settings: Settings, parts: assembly.Parts) -> assembly.Coordinator:
        parts.dryads = cast("Dryads", InstantDryads())
        parts.keys = parts.keys or KeyPool(settings.key_stock)
        built = real_assemble(settings, parts)
        pools[id(built)] = parts.keys
        return built

    @asynccontextmanager
    async def running(self: assembly.Coordinator) -> AsyncIterator[None]:
        async with real_running(self):
            await register_workers(self.service, workers)
            await stock_filled(pools[id(self)])
            yield

    assembly.assemble = assemble
    assembly.Coordinator.running = running  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-fencing", action="store_true", help="diagnostic only")
    parser.add_argument(
        "--no-pre-ping", action="store_true", help="diagnostic: no ping at each checkout"
    )
    parser.add_argument("--switch-interval", type=float, help="diagnostic: the GIL's, seconds")
    parser.add_argument(
        "--pipeline-commit", action="store_true", help="diagnostic: stop 24's commit"
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then boruta-coordinator's")
    args = parser.parse_args()
    argv: list[str] = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    clock = CommitClock()
    _time_commits(clock)
    signal.signal(signal.SIGUSR1, clock.report)
    _simulated_workers(args.workers)
    if args.no_fencing:

        def unchecked(self: ServingLock, conn: Any) -> None:
            return None

        def written(dbapi: Any, changes: Changes, fence: Any) -> list[Numbered]:
            return write_postgresql(dbapi, changes, None)

        ServingLock.check_write = unchecked  # type: ignore[method-assign]
        setattr(sql_module, "write_postgresql", written)  # noqa: B010 - not exported
    if args.pipeline_commit:
        setattr(sql_module, "write_postgresql", write_pipelined)  # noqa: B010 - not exported
    if args.no_pre_ping:
        # The engine pings a pooled connection only after it idled: never, here.
        setattr(engine, "PING_AFTER_IDLE", float("inf"))  # noqa: B010 - not exported
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
