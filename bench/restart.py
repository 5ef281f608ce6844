"""Restart time: from process start to serving again, with 10,000 stored requests."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import httpx
from _common import (
    BOARD_CAPS,
    READY,
    Process,
    coordinator_argv,
    free_port,
    median,
    seed,
    seed_request,
    seed_worker,
    uuid_of,
)

from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.store.sql import SqlStore

DONE_STATES = (
    RequestState.DONE,
    RequestState.CANCELLED,
    RequestState.TIMEOUT,
    RequestState.FAILED,
    RequestState.INVALID,
)


def build(db: Path, total: int, running: int, spare: int) -> dict[str, int]:
    """``running`` RUN workers each with its IN PROGRESS request, ``spare`` in MAINTENANCE;
    of the other requests about half are WAITING and half have ended."""
    workers: list[Worker] = [
        seed_worker(n, WorkerState.RUN, BOARD_CAPS) for n in range(1, running + 1)
    ]
    workers += [
        seed_worker(n, WorkerState.MAINTENANCE, BOARD_CAPS)
        for n in range(running + 1, running + spare + 1)
    ]
    rng = random.Random(7)
    requests: list[Request] = []
    counts: dict[str, int] = {}
    for rid in range(1, total + 1):
        if rid <= running:
            state, worker = RequestState.IN_PROGRESS, uuid_of(rid)
        else:
            state = RequestState.WAITING if rng.random() < 0.5 else rng.choice(DONE_STATES)
            worker = None
        requests.append(seed_request(rid, "bench", BOARD_CAPS, state, worker))
        counts[state.value] = counts.get(state.value, 0) + 1
    store = SqlStore.open(db)
    try:
        store.migrate()
        seed(store, requests, workers)
    finally:
        store.close()
    return counts


def one_start(db: Path, log: Path) -> tuple[float, float]:
    """Seconds from spawning ``serve`` until the ready line, and until /healthz answers 200."""
    port = free_port()
    argv = coordinator_argv(db, "serve", "--http", f"127.0.0.1:{port}")
    start = time.perf_counter()
    proc = Process(argv, log)
    ready = healthy = 0.0
    try:
        with httpx.Client(timeout=2) as http:
            while not (ready and healthy):
                now = time.perf_counter() - start
                if now > 60:
                    raise RuntimeError(f"no ready line or /healthz after 60 s: {proc.output()!r}")
                if not ready and READY.search(proc.output()):
                    ready = now
                if not healthy:
                    try:
                        answer = http.get(f"http://127.0.0.1:{port}/healthz")
                        if answer.status_code == 200:
                            healthy = time.perf_counter() - start
                    except httpx.TransportError:
                        pass
                time.sleep(0.005)
    finally:
        proc.stop()
    return ready, healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=150, help="RUN workers with a job each")
    parser.add_argument("--spare", type=int, default=50, help="MAINTENANCE workers")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-restart-") as name:
        tmp = Path(name)
        empty, full = tmp / "empty.db", tmp / "full.db"
        build(empty, 0, 0, 0)
        counts = build(full, args.requests, args.running, args.spare)
        mix = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        print(
            f"restart: {args.requests} stored requests ({mix}); "
            f"{args.running + args.spare} workers; {args.runs} runs each, medians"
        )
        results: dict[str, list[tuple[float, float]]] = {"empty": [], "full": []}
        for _ in range(args.runs):  # interleaved, so load from elsewhere hits both alike
            results["empty"].append(one_start(empty, tmp / "empty.log"))
            results["full"].append(one_start(full, tmp / "full.log"))

    for label, runs in (("empty database", results["empty"]), ("10,000 requests", results["full"])):
        ready = median([r for r, _ in runs])
        healthy = median([h for _, h in runs])
        spread = ", ".join(f"{h:.2f}" for _, h in runs)
        print(
            f"{label:<16} ready line {ready:5.2f} s   /healthz 200 {healthy:5.2f} s"
            f"   (runs: {spread} s)"
        )
    healthy_full = median([h for _, h in results["full"]])
    healthy_empty = median([h for _, h in results["empty"]])
    print(f"cost of the 10,000 stored requests: {healthy_full - healthy_empty:+.2f} s")
    verdict = "MET" if healthy_full <= 2 else "NOT MET"
    print(f"serving again in {healthy_full:.2f} s (goal <= 2 s: {verdict})")


if __name__ == "__main__":
    main()
