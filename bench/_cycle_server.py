"""Our coordinator for the job-cycle bench: the product's own server path
(``coordinator.httpd.server.serve``: uvicorn with the guarded protocol) on loopback, with W
in-process workers."""

from __future__ import annotations

import argparse
import cProfile
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import anyio
from _common import BOARD_CAPS, uuid_of

from coordinator.assembly import Parts, assemble
from coordinator.domain.model import KeyType, User
from coordinator.domain.states import WorkerState
from coordinator.httpd.server import serve
from coordinator.service.interfaces import Dryads
from coordinator.service.keys import JobKey, KeyPool, generate, generate_ed25519
from coordinator.service.operations import Service
from coordinator.settings import Settings
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql import SqlStore

ADMIN = User("bench-admin", admin=True)


class InstantDryads:
    """Dryads that do what they are told at once (the dryad link does not exist yet).

    Any command of the ``Dryads`` port (prepare, maintenance, release, display, ...) is
    answered at once with nothing, so the bench keeps working while that port grows.
    """

    def __getattr__(self, name: str) -> Callable[..., Awaitable[None]]:
        async def done(*args: object, **kwargs: object) -> None:
            return None

        return done


class FixedKeys(KeyPool):
    """Diagnostic only: hands out a few keys made in advance, to show what key making costs."""

    def __init__(self, count: int = 4) -> None:
        super().__init__(count)
        self._fixed = [generate() for _ in range(count)]
        self._next = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def get(self, kind: KeyType = KeyType.RSA) -> JobKey:
        if kind is KeyType.ED25519:
            return generate_ed25519()
        self._next += 1
        return self._fixed[self._next % len(self._fixed)]


async def register_workers(service: Service, count: int) -> None:
    for n in range(1, count + 1):
        await service.register({"UUID": uuid_of(n), **BOARD_CAPS}, f"127.0.0.1:{22000 + n}")
        await service.set_worker_state(ADMIN, uuid_of(n), WorkerState.IDLE)
    uuids = [uuid_of(n) for n in range(1, count + 1)]
    with anyio.fail_after(60):
        while any(service.get_worker(u).state is not WorkerState.IDLE for u in uuids):
            await service.changed()


async def stock_filled(keys: KeyPool) -> None:
    """Wait until the RSA stock is full: keys are made ahead in idle time, and the run
    measures the cycles, not the first filling of the stock."""
    with anyio.fail_after(300):
        while keys.level < keys.size:  # noqa: ASYNC110 - the pool tells no one of a new key
            await anyio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fixed-keys", action="store_true")
    parser.add_argument("--sqlite-sync", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here at exit")
    parser.add_argument("--finished-in-memory", type=int, default=Settings().finished_in_memory)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    store = SqlStore.open(args.db, sqlite_sync=args.sqlite_sync)
    store.migrate()
    store_profiler = cProfile.Profile() if args.profile else None
    if store_profiler is not None:
        # The store's commits run in worker threads, which the main profiler does not see.
        commit = store.commit
        one_at_a_time = threading.Lock()

        def profiled_commit(changes: Changes) -> list[Numbered]:
            with one_at_a_time:
                result: list[Numbered] = store_profiler.runcall(commit, changes)
                return result

        store.commit = profiled_commit  # type: ignore[method-assign]
    keys = FixedKeys() if args.fixed_keys else KeyPool()
    settings = Settings(
        http=f"127.0.0.1:{args.port}",
        sqlite_sync=args.sqlite_sync,
        finished_in_memory=args.finished_in_memory,
        log_level="WARNING",
    )
    dryads = cast("Dryads", InstantDryads())
    coordinator = assemble(settings, Parts(store=store, dryads=dryads, keys=keys))

    async def before_ready() -> None:
        await register_workers(coordinator.service, args.workers)
        if not args.fixed_keys:
            await stock_filled(keys)
        print(f"coordinator ready on http://127.0.0.1:{args.port}", flush=True)

    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            # uvicorn raises the SIGTERM it caught again after its shutdown: let that one
            # pass, so the stats get written.
            signal.signal(signal.SIGTERM, lambda *_: None)
            profiler.runcall(serve, coordinator, settings, before_ready=before_ready)
        else:
            serve(coordinator, settings, before_ready=before_ready)
    finally:
        if profiler is not None:
            profiler.dump_stats(args.profile)
        if store_profiler is not None:
            store_profiler.dump_stats(f"{args.profile}.store")
        store.close()


if __name__ == "__main__":
    main()
