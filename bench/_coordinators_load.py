"""Job cycles for bench/coordinators.py (create → matched → acquired → closed, Ed25519 job
keys, one keep-alive connection per lane), run in chunks, and CPU seconds of process trees
that count the children already gone."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from _common import BOARD_CAPS
from _light_http import LightConnection
from _proc_cpu import descendants, own_cpu

_TICKS = os.sysconf("SC_CLK_TCK")


def _with_reaped(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children that ended and were waited for (so a
    PostgreSQL session that came and went between two readings still counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / _TICKS  # utime, stime, cutime, cstime


def tree_cpu(pid: int, leave_out: frozenset[int] = frozenset()) -> dict[int, float]:
    """CPU seconds of ``pid`` and of each live descendant (with their ended children), by
    pid, but for the processes in ``leave_out``."""
    return {p: _with_reaped(p) for p in [pid, *descendants(pid)] if p not in leave_out}


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two ``tree_cpu`` readings. A process that ended in between
    is found again in its parent's reaped children's time."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()) - sum(
        cpu for pid, cpu in before.items() if pid not in after
    )


@dataclass
class Cycles:
    count: int
    elapsed: float
    latencies: list[float]
    client_cpu: float  # CPU seconds of this (the load generator's) process meanwhile


class Lanes:
    """``concurrency`` lanes, each a keep-alive connection that runs one cycle at a time;
    lane n goes to ``addresses[n % len(addresses)]``."""

    def __init__(self, addresses: list[tuple[str, int]], token: str, concurrency: int) -> None:
        self._lanes = [
            LightConnection(*addresses[n % len(addresses)], token) for n in range(concurrency)
        ]
        self._spread = min(len(addresses), concurrency)
        body = {"Priority": 8, "Caps": BOARD_CAPS, "KeyType": "ed25519"}
        self._create = self._lanes[0].request("/api/v1/reqs/", json.dumps(body).encode())

    async def _cycle(self, conn: LightConnection) -> float:
        start = time.perf_counter()
        status, body = await conn.call(self._create)
        if status != 201:
            raise RuntimeError(f"create: {status} {body!r}")
        rid = json.loads(body)["ReqID"]
        # blocks until matched (IN PROGRESS), then answers with the AccessInfo
        status, body = await conn.call(conn.request(f"/api/v1/reqs/{rid}/acquire_worker?wait=60"))
        if status != 200 or b'"Key"' not in body:
            raise RuntimeError(f"acquire_worker: {status} {body!r}")
        status, body = await conn.call(conn.request(f"/api/v1/reqs/{rid}/close"))
        if status != 204:
            raise RuntimeError(f"close: {status} {body!r}")
        return time.perf_counter() - start

    async def warm_up(self, count: int) -> None:
        """``count`` cycles one at a time, through each address in turn."""
        for n in range(count):
            await self._cycle(self._lanes[n % self._spread])

    async def cycles(self, count: int) -> Cycles:
        """``count`` cycles over all lanes, each lane taking the next as it finishes one."""
        latencies: list[float] = []
        todo = iter(range(count))

        async def lane(conn: LightConnection) -> None:
            latencies.extend([await self._cycle(conn) for _ in todo])

        client_before = own_cpu(os.getpid())
        start = time.perf_counter()
        await asyncio.gather(*(lane(conn) for conn in self._lanes))
        elapsed = time.perf_counter() - start
        return Cycles(count, elapsed, latencies, own_cpu(os.getpid()) - client_before)

    async def close(self) -> None:
        """Close every connection; the next cycle on a lane connects again (the server
        closes connections idle for longer than its keep-alive timeout anyway)."""
        for conn in self._lanes:
            await conn.close()
