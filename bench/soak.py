"""Soak: does memory stay flat over months of use? RSS at the start, middle and end of
(1) a dryad's display driven through many updates on the simulated MuxPi, and (2) a
coordinator driven through many job cycles and event-stream connects and disconnects.

Goal (issue 13): after warm-up, no growth beyond 2 MB. The defaults are the issue's
figures (100,000 updates, 100,000 cycles, 10,000 SSE connects); ``--scale 0.1`` runs a
tenth of each for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from _common import BENCH, READY, Process, add_user, free_port

from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from hardware.display import StmDisplay
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm

GOAL_MB = 2.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, in MB (from /proc: what the kernel counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _marks(total: int) -> list[int]:
    """Where RSS is read: the end of the warm-up (the first tenth), then every quarter of
    the rest, so a curve shows a trend apart from the allocator's noise."""
    warm = max(1, total // 10)
    return sorted({warm + (total - warm) * k // 4 for k in range(5)})


def report(name: str, points: list[tuple[int, float]]) -> None:
    """Print the curve and the growth after warm-up (the first point)."""
    curve = "  ".join(f"{n:>7}: {mb:6.1f} MB" for n, mb in points)
    growth = points[-1][1] - points[0][1]
    verdict = "met" if growth <= GOAL_MB else "NOT MET"
    print(f"{name}\n  {curve}\n  growth after warm-up: {growth:+.2f} MB ({verdict})")


async def soak_display(updates: int) -> list[tuple[int, float]]:
    """One StmDisplay on the STM simulator (a pty): a RUNNING board's minute redraws."""
    points: list[tuple[int, float]] = []
    async with PtyStm() as sim, SerialStm(sim.path, timeout=1.0) as stm:
        display = StmDisplay(stm)
        marks = set(_marks(updates))
        for n in range(1, updates + 1):
            await display.show_text("RUNNING", f"alice {n % 1440} min")
            if n in marks:
                gc.collect()
                points.append((n, rss_mb()))
    return points


async def soak_coordinator(
    tmp: Path, cycles: int, connects: int, concurrency: int, finished: int
) -> list[tuple[int, float]]:
    db = tmp / "soak.db"
    store = SqlStore.open(db)
    store.migrate()
    token = add_user(store, "soak")
    store.close()
    port = free_port()
    server = Process(
        [
            sys.executable,
            str(BENCH / "_cycle_server.py"),
            *("--db", str(db), "--port", str(port), "--workers", str(concurrency)),
            *("--fixed-keys", "--sqlite-sync", "NORMAL"),
            *("--finished-in-memory", str(finished)),
        ],
        tmp / "soak.log",
    )
    points: list[tuple[int, float]] = []
    try:
        server.wait_for(READY, timeout=120)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            marks = _marks(cycles)
            done = 0
            sse_per_cycle = connects / cycles
            sse_done = 0.0
            for mark in marks:
                await _cycles(http, mark - done, concurrency)
                sse_due = int(mark * sse_per_cycle) - int(sse_done)
                await _sse_connects(url, token, sse_due)
                sse_done = mark * sse_per_cycle
                done = mark
                await anyio.sleep(1)  # let the server settle before reading its RSS
                points.append((done, rss_mb(server.popen.pid)))
    finally:
        server.stop()
    return points


async def _cycles(http: httpx.AsyncClient, n: int, concurrency: int) -> None:
    todo = iter(range(n))

    async def lane() -> None:
        for _ in todo:
            made = await http.post("/api/v1/reqs/", json={"Priority": 8})
            rid = made.json()["ReqID"]
            got = await http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 60})
            if got.status_code != 200:
                raise RuntimeError(f"acquire_worker: {got.status_code} {got.text}")
            await http.post(f"/api/v1/reqs/{rid}/close")

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _sse_connects(url: str, token: str, n: int) -> None:
    """Open the event stream, read its first bytes, and hang up; ``n`` times, 8 at once."""
    todo = iter(range(n))

    async def lane() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in todo:
                async with http.stream(
                    "GET", "/api/v1/events", params={"after": 0, "token": token}
                ) as stream:
                    async for _chunk in stream.aiter_bytes():
                        break

    await asyncio.gather(*(lane() for _ in range(8)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the figures")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--finished-in-memory",
        type=int,
        default=None,
        help="the coordinator's finished_in_memory (default: 10,000 times the scale)",
    )
    parser.add_argument(
        "--parts",
        default="dryad,coordinator",
        help="which soaks to run, comma-separated (default: dryad,coordinator)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"dryad", "coordinator"}:
        parser.error("--parts: dryad, coordinator or both")
    updates = max(10, int(100_000 * args.scale))
    cycles = max(10, int(100_000 * args.scale))
    connects = max(10, int(10_000 * args.scale))
    # The coordinator holds the newest finished requests (finished_in_memory, 10,000 by
    # default: the warm-up of the full run); scaled with the run, so that the warm-up
    # fills it at any scale and what follows shows whether anything else grows.
    finished = args.finished_in_memory
    if finished is None:
        finished = max(1, int(Settings().finished_in_memory * args.scale))
    if "dryad" in parts:
        start = time.perf_counter()
        report(
            f"dryad display, {updates} updates (RSS of this process)",
            asyncio.run(soak_display(updates)),
        )
        print(f"  ({time.perf_counter() - start:.0f} s)")
    if "coordinator" in parts:
        _coordinator_soak(cycles, connects, args.concurrency, finished)


def _coordinator_soak(cycles: int, connects: int, concurrency: int, finished: int) -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        points = asyncio.run(soak_coordinator(Path(tmp), cycles, connects, concurrency, finished))
    report(
        f"coordinator, {cycles} job cycles and {connects} SSE connects, {finished} finished"
        " requests in memory (RSS of its process)",
        points,
    )
    print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
