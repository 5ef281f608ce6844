"""Dryad figures: RSS and idle CPU (sim profile), link round trip, start-to-IDLE time.

Runs the coordinator's store, service and link server in this process and real
``python -m dryad --profile sim`` processes over real SSH on loopback. Goals (issue 5):
RSS ≤ 60 MB and ≤ 1% of a core when idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from coordinator.domain.clock import SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.listing import ListSpec
from coordinator.domain.model import User
from coordinator.domain.states import WorkerState
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token
from coordinator.tunnels.none import DirectAccess
from coordinator.wire import Display, WorkerState as WireState

ADMIN = User("bench", admin=True)
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def start_dryad(home: Path, port: int, token: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True)
    (home / "dryad.toml").write_text(
        f'coordinator = "127.0.0.1:{port}"\nenrol_token = "{token}"\nprofile = "sim"\n'
        'state_dir = "state"\nssh_address = "127.0.0.1:22"\n[caps]\ndevice_type = "bench"\n'
        "[job_user]\nmanage = false\n[health]\ninterval = 3600\n"
    )
    log = (home / "dryad.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "dryad", "--config", str(home / "dryad.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def until(service: Service, check: Callable[[], bool], seconds: float = 60) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await service.changed()


def connected(service: Service) -> list[WorkerUUID]:
    """The workers whose dryad link is up."""
    everyone = service.list_workers(ListSpec(match=lambda w: True, sort_key=lambda w: w.uuid))
    return [w.uuid for w in everyone.items if service.connected(w.uuid)]


async def main(calls: int, idle_seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dryad-"))
    store = SqlStore.open(tmp / "bench.db")
    store.migrate()
    token = new_token()
    store.add_enrol_token(hash_token(token), datetime.now(UTC) + timedelta(hours=1))
    clock = SystemClock()
    link = DryadLink(store, clock)
    service = Service(store, link, DirectAccess(), clock, keys=KeyPool())
    link.service = service
    config = LinkConfig("127.0.0.1", 0, tmp / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        _, port = await tg.start(LinkServer(config, store, link).run)
        started = time.perf_counter()
        dryad = start_dryad(tmp / "dryad", port, token)
        try:
            await until(service, lambda: bool(connected(service)))
            registered = time.perf_counter() - started
            uuid = connected(service)[0]
            await service.set_worker_state(ADMIN, uuid, WorkerState.IDLE)
            await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)
            idle_at = time.perf_counter() - started

            panel = Display(WireState.IDLE)
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                await link.display(uuid, panel)
                times.append(time.perf_counter() - t)
            times.sort()

            await anyio.sleep(2)  # let start-up work settle before measuring idleness
            cpu0, t0 = cpu_seconds(dryad.pid), time.perf_counter()
            await anyio.sleep(idle_seconds)
            idle_cpu = (cpu_seconds(dryad.pid) - cpu0) / (time.perf_counter() - t0)
            rss = rss_mb(dryad.pid)
        finally:
            dryad.terminate()
            dryad.wait(20)
            tg.cancel_scope.cancel()
    store.close()

    print(f"dryad start → registered:          {registered:.2f} s")
    print(f"dryad start → IDLE (after setstate): {idle_at:.2f} s")
    # A display call includes the dryad drawing the screen on the (simulated) STM.
    print(
        f"link round trip coordinator→dryad→back ({calls} display calls, drawing included): "
        f"median {statistics.median(times) * 1e3:.2f} ms, "
        f"p99 {times[int(len(times) * 0.99) - 1] * 1e3:.2f} ms"
    )
    print(
        f"dryad RSS (sim profile, STM simulator in the same process): {rss:.1f} MB "
        f"(goal ≤ 60 MB: {'met' if rss <= 60 else 'NOT met'})"
    )
    print(
        f"dryad idle CPU over {idle_seconds:.0f} s: {idle_cpu * 100:.2f}% of a core "
        f"(goal ≤ 1%: {'met' if idle_cpu <= 0.01 else 'NOT met'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.idle_seconds)
