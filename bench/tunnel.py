"""Job tunnels, per ``tunnel_mode`` (dialback and link by default): scp throughput through the
tunnel vs direct to the same sshd, the coordinator's and dryad's CPU seconds per GiB, the
added connect latency, and the time from POST /api/v1/reqs/ to a working shell."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the e2e helpers start the real parts the same way

from _common import seed, seed_request, seed_worker  # noqa: E402
from api_latency import lag_report, scrape_lag  # noqa: E402

from coordinator.domain.states import WorkerState  # noqa: E402
from coordinator.store.sql import SqlStore  # noqa: E402
from tests.e2e.process_farm import ProcessFarm, eventually  # noqa: E402
from tests.e2e.test_job_access import (  # noqa: E402
    Access,
    Sshd,
    acquire,
    close,
    new_request,
    remove_user,
    ssh,
    ssh_argv,
    start_sshd,
)

MIB = 1 << 20
# What the waiting requests ask for, and the simulated workers have: not the job's board,
# so that they stay WAITING behind nothing and never take the real worker.
SEEDED_CAPS = {"device_type": "bench"}


def scp_seconds(access: Access, source: Path, port: int) -> float:
    """One scp of ``source`` to /dev/null on the board (SFTP mode, as scp uses today)."""
    options = ssh_argv(access, "", port)[1:-2]
    options[options.index("-p")] = "-P"  # scp's port flag
    argv = ["scp", "-q", *options, str(source)]
    argv.append(f"{access.user}@{access.host}:/dev/null")
    started = time.perf_counter()
    subprocess.run(argv, check=True, timeout=600)
    return time.perf_counter() - started


def banner_ms(host: str, port: int) -> float:
    """TCP connect to the SSH banner's first bytes: the path's own latency, in ms."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-")
    return (time.perf_counter() - started) * 1000


def login_ms(access: Access, port: int) -> float:
    started = time.perf_counter()
    done = ssh(access, "true", port=port)
    assert done.returncode == 0, done.stderr
    return (time.perf_counter() - started) * 1000


def post_to_shell(farm: ProcessFarm, tmp: Path, runs: int) -> list[float]:
    """Seconds from POST /api/v1/reqs/ to `ssh … true` succeeding, worker IDLE before."""
    times = []
    for _ in range(runs):
        eventually(lambda: farm.workers()["rpi4"]["State"] == "IDLE")
        started = time.perf_counter()
        rid = new_request(farm, "rpi4")
        access = acquire(farm, rid, tmp)
        assert ssh(access, "true").returncode == 0
        times.append(time.perf_counter() - started)
        close(farm, rid)
    return times


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def api_ms(farm: ProcessFarm, rid: int, seconds: float, done: Callable[[], bool]) -> list[float]:
    """Latencies (ms) of list (100 of them) and get calls, one after another, for
    ``seconds`` or until ``done()``."""
    times = []
    deadline = time.monotonic() + seconds
    with farm.http() as http:
        while time.monotonic() < deadline and not done():
            started = time.perf_counter()
            answer = http.post("/api/v1/reqs/list", json={"Paginator": {"Limit": 100}})
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
            started = time.perf_counter()
            assert http.get(f"/api/v1/reqs/{rid}").status_code == 200
            times.append((time.perf_counter() - started) * 1000)
    return times


def seed_farm(db: Path, requests: int, workers: int) -> None:
    """``requests`` WAITING requests and ``workers`` simulated workers in MAINTENANCE (no
    dryad: as bench/api_latency.py makes them) in the farm's database, before its start."""
    store = SqlStore.open(db)
    try:
        store.migrate()
        seed(
            store,
            [seed_request(rid, "bench", SEEDED_CAPS) for rid in range(1, requests + 1)],
            [seed_worker(n, WorkerState.MAINTENANCE, SEEDED_CAPS) for n in range(1, workers + 1)],
        )
    finally:
        store.close()


def api_under_copies(
    farm: ProcessFarm, access: Access, source: Path, copies: int
) -> tuple[list[float], list[float], float]:
    """API latencies (ms) idle, then while ``copies`` scp of ``source`` run at once through
    the tunnel; and the longest event loop lag (ms) during the copies."""
    with farm.http() as http:
        waiting = int(
            http.post("/api/v1/reqs/list", json={"Filter": {"States": ["WAITING"]}}).headers[
                "Boruta-List-Total"
            ]
        )
        workers = len(http.get("/api/v1/workers/").json())
    print(f"  (API calls with {waiting} requests WAITING and {workers} workers)")
    idle = api_ms(farm, access.rid, 10, lambda: False)
    with farm.http() as http:
        lag_before, _ = scrape_lag(http)
    options = ssh_argv(access, "", access.port)[1:-2]
    options[options.index("-p")] = "-P"
    target = f"{access.user}@{access.host}:/dev/null"
    running = [
        subprocess.Popen(["scp", "-q", *options, str(source), target], stderr=subprocess.DEVNULL)
        for _ in range(copies)
    ]
    busy = api_ms(farm, access.rid, 600, lambda: any(p.poll() is not None for p in running))
    for p in running:
        p.wait(600)
    with farm.http() as http:
        lag_after, peak = scrape_lag(http)
    longest = lag_report("copies", lag_before, lag_after, peak)
    return idle, busy, longest


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def parse_size(text: str) -> int:
    """``1G``, ``256M`` or a number of MiB, in MiB."""
    units = {"G": 1024, "M": 1}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass
class Figures:
    """One mode's measurements."""

    mode: str
    through: list[float]  # MiB/s
    direct: list[float]
    cpu_per_gib: list[float]  # coordinator + dryad CPU seconds per GiB through the tunnel
    banner_t: list[float]  # ms
    banner_d: list[float]
    login_t: list[float]
    login_d: list[float]
    shell: list[float]  # s
    api_idle: list[float] = field(default_factory=list)  # ms
    api_busy: list[float] = field(default_factory=list)
    api_lag: float = 0.0  # the longest event loop lag (ms) while 4 scp copied


def measure(mode: str, mib: int, runs: int, api: int = 0, workers: int = 0) -> Figures:
    """Start a farm with ``tunnel_mode = mode`` and measure it, cleaning up after."""
    user = f"brt-bench-{secrets.token_hex(4)}"
    coordinators: list = []  # type: ignore[type-arg]
    sshd: Sshd | None = None
    farm: ProcessFarm | None = None
    with tempfile.TemporaryDirectory(prefix="tunnel-bench-") as name:
        tmp = Path(name)
        try:
            sshd = start_sshd(tmp / "sshd", user)
            config = f'job_username = "{user}"\ntunnel_mode = "{mode}"\n'
            if api:
                seed_farm(tmp / "farm.db", api, workers)  # ProcessFarm's database
                config += "loop_lag_probe = 0.001\n"  # as bench/api_latency.py
            farm = ProcessFarm(tmp, coordinators, config)
            farm.dryad(1, "rpi4", sshd.port, user)
            farm.idle("rpi4")
            shell = post_to_shell(farm, tmp, 5)

            access = acquire(farm, new_request(farm, "rpi4"), tmp)
            source = tmp / "payload"
            with source.open("wb") as f:
                for _ in range(mib):
                    f.write(secrets.token_bytes(MIB))  # incompressible, like an image
            pids = (farm.coordinator.process.pid, farm.dryads[0].pid)
            through, direct, cpu, split = [], [], [], []
            for _ in range(runs):  # interleaved, so drift hits both alike
                before = [cpu_seconds(p) for p in pids]
                through.append(mib / scp_seconds(access, source, access.port))
                used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
                cpu.append(sum(used) * 1024 / mib)
                split.append([round(u * 1024 / mib, 2) for u in used])
                direct.append(mib / scp_seconds(access, source, sshd.port))
            print(f"  ({mode}: CPU-s per GiB, [coordinator, dryad] per run: {split})")
            banner_t = [banner_ms(access.host, access.port) for _ in range(20)]
            banner_d = [banner_ms(access.host, sshd.port) for _ in range(20)]
            login_t = [login_ms(access, access.port) for _ in range(10)]
            login_d = [login_ms(access, sshd.port) for _ in range(10)]
            api_idle, api_busy, api_lag = (
                api_under_copies(farm, access, source, 4) if api else ([], [], 0.0)
            )
            log = (tmp / "coordinator.log").read_text()
            if "dial-back failed" in log:
                print(f"  ({mode}: dial-back failed; the link carried the tunnel)")
        finally:
            if farm is not None:
                farm.stop_dryads()
            for c in coordinators:
                c.process.terminate()
                c.process.wait(20)
            if sshd is not None:
                sshd.stop()
            remove_user(user)
    return Figures(
        mode,
        through,
        direct,
        cpu,
        banner_t,
        banner_d,
        login_t,
        login_d,
        shell,
        api_idle,
        api_busy,
        api_lag,
    )


def report(f: Figures, mib: int, runs: int) -> None:
    med = statistics.median
    ratio = med(f.through) / med(f.direct)
    added_banner = med(f.banner_t) - med(f.banner_d)
    added_login = med(f.login_t) - med(f.login_d)
    cpu = med(f.cpu_per_gib)
    print(f"tunnel_mode = {f.mode!r}: scp {mib} MiB to /dev/null, median of {runs} (MiB/s):")
    print(f"  through the tunnel {med(f.through):8.1f}   {[round(x) for x in f.through]}")
    print(f"  direct to sshd     {med(f.direct):8.1f}   {[round(x) for x in f.direct]}")
    print(f"  ratio {ratio:.0%} (goal >= 70%: {'met' if ratio >= 0.7 else 'NOT met'})")
    print(
        f"  coordinator + dryad CPU: {cpu:.2f} CPU-s per GiB through the tunnel "
        f"{[round(x, 2) for x in f.cpu_per_gib]} "
        f"(goal <= 1.5: {'met' if cpu <= 1.5 else 'NOT met'})"
    )
    print("  connect latency, medians (ms):")
    print(
        f"    TCP connect to SSH banner: tunnel {med(f.banner_t):.2f}, direct {med(f.banner_d):.2f}"
    )
    print(
        f"    ssh login + `true`:        tunnel {med(f.login_t):.1f}, direct {med(f.login_d):.1f}"
    )
    print(
        f"    added: {added_banner:.2f} ms to the banner, {added_login:.1f} ms to a login "
        f"(goal <= 5 ms: {'met' if max(added_banner, added_login) <= 5 else 'NOT met'})"
    )
    print(
        f"  POST /api/v1/reqs/ to a working shell, idle worker: median {med(f.shell):.3f} s, "
        f"max {max(f.shell):.3f} s (goal <= 1 s: {'met' if med(f.shell) <= 1 else 'NOT met'})"
    )
    if f.api_busy:
        print(
            f"  API list/get p99 (ms): idle {p99(f.api_idle):.1f} ({len(f.api_idle)} calls), "
            f"while 4 scp copy through the tunnel {p99(f.api_busy):.1f} ({len(f.api_busy)} calls)"
            f" (goals <= 10 / <= 20 ms: {'met' if p99(f.api_idle) <= 10 else 'NOT met'} /"
            f" {'met' if p99(f.api_busy) <= 20 else 'NOT met'}); longest event loop lag"
            f" during the copies {f.api_lag:.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1G", help="file size for scp: 1G, 256M, … (MiB if bare)")
    parser.add_argument("--runs", type=int, default=3, help="scp runs per path")
    parser.add_argument(
        "--modes", default="dialback,link", help="tunnel_mode values to measure, comma-separated"
    )
    parser.add_argument(
        "--api",
        type=int,
        default=0,
        metavar="N",
        help="also time API calls with N waiting requests, idle and while 4 scp copy",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1000,
        metavar="W",
        help="with --api: W simulated workers in MAINTENANCE besides the job's (default 1000)",
    )
    args = parser.parse_args()
    mib = parse_size(args.size)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    results = [
        measure(m.strip(), mib, args.runs, args.api, args.workers) for m in args.modes.split(",")
    ]
    for figures in results:
        report(figures, mib, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
