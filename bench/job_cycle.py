"""Job cycles per second and server CPU per cycle, ours (with Ed25519 and with RSA job keys)
against labgrid 26's coordinator, in one run on loopback.

Server CPU is read from /proc/<pid>/stat over the measured cycles only: labgrid's
coordinator process, and our coordinator process plus its RSA key makers (shown apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import BENCH, BOARD_CAPS, CACHE, READY, Process, add_user, free_port, percentile
from _light_http import LightConnection
from _proc_cpu import own_cpu, tree_cpu, used_since

from coordinator.store.sql import SqlStore

LABGRID_VENV = CACHE / "labgrid-venv"
LABGRID_SERIES = "26."
LISTENING = re.compile(rb"listening on [^\s]+:(\d+)")
RESULT = re.compile(rb"^RESULT (.*)$", re.MULTILINE)


@dataclass
class Figures:
    name: str
    cycles: int
    elapsed: float
    latencies: list[float]
    steps: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: float = 0.0  # CPU seconds of the server (and its children) while measured
    helpers_cpu: float = 0.0  # of that, the server's child processes (our key makers)
    loop_cpu: float = 0.0  # of that, our server's main thread: the event loop
    client_cpu: float = 0.0  # CPU seconds of the load generator's process while measured

    @property
    def rate(self) -> float:
        return self.cycles / self.elapsed

    @property
    def cpu_per_cycle(self) -> float:
        return self.server_cpu / self.cycles

    def line(self) -> str:
        p50 = percentile(self.latencies, 50) * 1000
        p99 = percentile(self.latencies, 99) * 1000
        return (
            f"{self.name:<34} {self.rate:9.1f} cycles/s   "
            f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({self.cycles} in {self.elapsed:.2f} s)"
            f"\n    server CPU       {self.cpu_per_cycle * 1000:7.2f} ms/cycle"
            + (
                f"   (of which child processes {self.helpers_cpu / self.cycles * 1000:.2f})"
                if self.helpers_cpu
                else ""
            )
            + (
                f"\n      event loop     {self.loop_cpu / self.cycles * 1000:7.2f} ms/cycle"
                "   (the rest: the store's commit thread, key makers, other threads)"
                if self.loop_cpu
                else ""
            )
            + f"\n    client CPU       {self.client_cpu / self.cycles * 1000:7.2f} ms/cycle"
            " (the load generator's process)"
        ) + "".join(
            f"\n    {step:<16} p50 {percentile(t, 50) * 1000:7.2f} ms   "
            f"p99 {percentile(t, 99) * 1000:7.2f} ms"
            for step, t in self.steps.items()
        )


# ---- labgrid ------------------------------------------------------------------------------


def _pypi_env() -> dict[str, str]:
    """pip from PyPI only: no local config, no extra indexes or wheel directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip(*args: str) -> str:
    argv = [str(LABGRID_VENV / "bin" / "pip"), *args, "--index-url", "https://pypi.org/simple"]
    out = subprocess.run(argv, env=_pypi_env(), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def ensure_labgrid() -> str:
    """Install the newest labgrid 26.x (else the newest, said aloud) into bench/.cache."""
    if not (LABGRID_VENV / "bin" / "pip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LABGRID_VENV)], check=True)
    listing = _pip("index", "versions", "labgrid")
    found = re.search(r"Available versions: (.*)", listing)
    versions = [v.strip() for v in found[1].split(",")] if found else []
    if not versions:
        raise RuntimeError(f"PyPI lists no labgrid versions:\n{listing}")
    wanted = next((v for v in versions if v.startswith(LABGRID_SERIES)), None)
    if wanted is None:
        wanted = versions[0]
        print(f"NOTE: no labgrid {LABGRID_SERIES}x on PyPI; using the newest, {wanted}")
    have = subprocess.run(
        [str(LABGRID_VENV / "bin" / "python"), "-c", "import labgrid; print(labgrid.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if have != wanted:
        print(f"installing labgrid {wanted} into {LABGRID_VENV} ...", flush=True)
        _pip("install", "-q", f"labgrid=={wanted}")
    return wanted


def run_labgrid(tmp: Path, places: int, cycles: int, concurrency: int) -> tuple[Figures, int]:
    workdir = tmp / "labgrid"
    workdir.mkdir()
    port = free_port()
    coordinator = Process(
        [str(LABGRID_VENV / "bin" / "labgrid-coordinator"), "-l", f"127.0.0.1:{port}"],
        workdir / "coordinator.log",
    )
    try:
        coordinator.wait_for(LISTENING, timeout=60)
        argv = [
            str(LABGRID_VENV / "bin" / "python"),
            str(BENCH / "_labgrid_client.py"),
            *("--address", f"127.0.0.1:{port}", "--places", str(places)),
            *("--cycles", str(cycles), "--concurrency", str(concurrency)),
            *("--server-pid", str(coordinator.popen.pid)),
        ]
        out = subprocess.run(argv, capture_output=True, timeout=900, cwd=workdir)
        found = RESULT.search(out.stdout)
        if out.returncode != 0 or found is None:
            raise RuntimeError(f"labgrid client failed:\n{out.stderr.decode()[-3000:]}")
    finally:
        coordinator.stop()
    result = json.loads(found[1])
    figures = Figures("labgrid-coordinator", cycles, result["elapsed"], result["latencies"])
    figures.server_cpu = float(result["server_cpu"])
    figures.client_cpu = float(result["client_cpu"])
    return figures, int(result["polls"])


# ---- ours ---------------------------------------------------------------------------------


Call = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


@asynccontextmanager
async def _httpx_lanes(url: str, token: str, lanes: int) -> AsyncIterator[list[Call]]:
    """httpx's AsyncClient, as an application would call us: one pool shared by all lanes."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=lanes, max_keepalive_connections=lanes)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as http:

        async def call(path: str, body: bytes) -> tuple[int, bytes]:
            extra = {"Content-Type": "application/json"} if body else None
            got = await http.post(path, content=body, headers=extra)
            return got.status_code, got.content

        yield [call] * lanes


@asynccontextmanager
async def _light_lanes(url: str, token: str, lanes: int) -> AsyncIterator[list[Call]]:
    """One keep-alive asyncio-streams connection per lane (bench/_light_http.py)."""
    host, _, port = url.removeprefix("http://").partition(":")
    connections = [LightConnection(host, int(port), token) for _ in range(lanes)]

    def caller(conn: LightConnection) -> Call:
        async def call(path: str, body: bytes) -> tuple[int, bytes]:
            return await conn.call(conn.request(path, body))

        return call

    try:
        yield [caller(c) for c in connections]
    finally:
        for conn in connections:
            await conn.close()


async def _our_cycles(
    url: str,
    token: str,
    cycles: int,
    concurrency: int,
    key_type: str,
    server_pid: int,
    client: str,
) -> Figures:
    body: dict[str, object] = {"Priority": 8, "Caps": BOARD_CAPS}
    if key_type != "rsa":  # RSA is what a client that does not ask gets
        body["KeyType"] = key_type
    create_body = json.dumps(body).encode()
    lanes_of = _light_lanes if client == "light" else _httpx_lanes
    async with lanes_of(url, token, concurrency) as calls:
        steps: dict[str, list[float]] = {"create": [], "acquire (wait)": [], "close": []}

        async def cycle(call: Call) -> float:
            start = time.perf_counter()
            status, made = await call("/api/v1/reqs/", create_body)
            if status != 201:
                raise RuntimeError(f"create: {status} {made!r}")
            rid = json.loads(made)["ReqID"]
            created = time.perf_counter()
            # blocks until matched (IN PROGRESS), then answers with the AccessInfo
            status, got = await call(f"/api/v1/reqs/{rid}/acquire_worker?wait=60", b"")
            if status != 200 or b'"Key"' not in got:
                raise RuntimeError(f"acquire_worker: {status} {got!r}")
            acquired = time.perf_counter()
            status, closed = await call(f"/api/v1/reqs/{rid}/close", b"")
            if status != 204:
                raise RuntimeError(f"close: {status} {closed!r}")
            end = time.perf_counter()
            steps["create"].append(created - start)
            steps["acquire (wait)"].append(acquired - created)
            steps["close"].append(end - acquired)
            return end - start

        for _ in range(min(20, cycles)):  # warm-up, not measured
            await cycle(calls[0])
        for times in steps.values():
            times.clear()
        latencies: list[float] = []
        todo = iter(range(cycles))

        async def lane(call: Call) -> None:
            latencies.extend([await cycle(call) for _ in todo])

        cpu_before = tree_cpu(server_pid)
        loop_before = _thread_cpu(server_pid, server_pid)
        client_before = own_cpu(os.getpid())
        start = time.perf_counter()
        await asyncio.gather(*(lane(call) for call in calls))
        elapsed = time.perf_counter() - start
        client_cpu = own_cpu(os.getpid()) - client_before
        cpu_after = tree_cpu(server_pid)
        loop_after = _thread_cpu(server_pid, server_pid)
    figures = Figures("", cycles, elapsed, latencies, steps)
    figures.server_cpu = used_since(cpu_before, cpu_after)
    figures.helpers_cpu = figures.server_cpu - (
        cpu_after.get(server_pid, 0.0) - cpu_before.get(server_pid, 0.0)
    )
    figures.client_cpu = client_cpu
    figures.loop_cpu = loop_after - loop_before
    return figures


def _thread_cpu(pid: int, tid: int) -> float:
    """User plus system CPU seconds of one thread of ``pid`` (its main thread: ``tid=pid``)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ours(
    tmp: Path,
    name: str,
    workers: int,
    cycles: int,
    concurrency: int,
    key_type: str,
    client: str,
    *extra: str,
) -> Figures:
    db = tmp / f"{name}.db"
    store = SqlStore.open(db)
    store.migrate()
    token = add_user(store, "bench")
    store.close()
    port = free_port()
    server = Process(
        [
            sys.executable,
            str(BENCH / "_cycle_server.py"),
            *("--db", str(db), "--port", str(port), "--workers", str(workers)),
            *extra,
        ],
        tmp / f"{name}.log",
    )
    try:
        server.wait_for(READY, timeout=120)
        url = f"http://127.0.0.1:{port}"
        figures = asyncio.run(
            _our_cycles(url, token, cycles, concurrency, key_type, server.popen.pid, client)
        )
    finally:
        server.stop()
    figures.name = name
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000, help="measured cycles per system")
    parser.add_argument("--workers", type=int, default=8, help="our workers = labgrid places")
    parser.add_argument("--concurrency", type=int, default=8, help="cycles in flight at once")
    parser.add_argument(
        "--key-type",
        choices=("ed25519", "rsa", "both"),
        default="both",
        help="the job keys our cycles ask for (rsa: as the Go client, which does not ask)",
    )
    parser.add_argument(
        "--client",
        choices=("light", "httpx", "both"),
        default="both",
        help="our load generator: asyncio streams with built requests (light), or httpx",
    )
    parser.add_argument(
        "--server-profile",
        metavar="PREFIX",
        help="run our server under cProfile; stats go to PREFIX.<keys>.<client>",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="rounds of every system, then min and median"
    )
    parser.add_argument("--skip-labgrid", action="store_true")
    parser.add_argument("--skip-diagnostic", action="store_true", help="no fixed-keys run")
    args = parser.parse_args()
    if args.concurrency > args.workers:
        parser.error("--concurrency must not exceed --workers (each cycle holds a board)")
    kinds = ["ed25519", "rsa"] if args.key_type == "both" else [args.key_type]
    clients = ["light", "httpx"] if args.client == "both" else [args.client]

    print(
        f"job cycles: N={args.cycles}, {args.workers} workers/places, "
        f"{args.concurrency} cycles in flight, all on 127.0.0.1, {os.cpu_count()} cores"
        + (f", {args.runs} rounds" if args.runs > 1 else "")
    )
    version = None if args.skip_labgrid else ensure_labgrid()
    ratios: dict[tuple[str, str], list[tuple[float, float]]] = {}
    cpus: dict[str, list[float]] = {}
    for n in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"--- round {n} of {args.runs}", flush=True)
        labgrid, ours = _round(args, version, kinds, clients)
        for figures in [*([labgrid] if labgrid else []), *ours.values()]:
            cpus.setdefault(figures.name, []).append(figures.cpu_per_cycle * 1000)
        if labgrid is not None:
            for key, figures in ours.items():
                rate = figures.rate / labgrid.rate
                cpu = figures.cpu_per_cycle / labgrid.cpu_per_cycle if labgrid.server_cpu else 0
                ratios.setdefault(key, []).append((rate, cpu))
                _print_ratio(key, rate, cpu)
    if args.runs > 1:
        print(f"--- over {args.runs} rounds (min / median)")
        for name, values in cpus.items():
            print(
                f"{name:<40} server CPU {min(values):5.2f} / {statistics.median(values):5.2f}"
                " ms/cycle"
            )
        for (kind, client), pairs in ratios.items():
            rates, cpu_ratios = [r for r, _ in pairs], [c for _, c in pairs]
            print(
                f"{kind:>8}, {client:<5}: cycles/s ours/labgrid max {max(rates):.2f}x, "
                f"median {statistics.median(rates):.2f}x; server CPU per cycle ours/labgrid "
                f"min {min(cpu_ratios):.2f}x, median {statistics.median(cpu_ratios):.2f}x"
            )


def _round(
    args: argparse.Namespace, version: str | None, kinds: list[str], clients: list[str]
) -> tuple[Figures | None, dict[tuple[str, str], Figures]]:
    """One run of each system, labgrid first; the figures are printed as they come."""
    with tempfile.TemporaryDirectory(prefix="bench-job-cycle-") as name:
        tmp = Path(name)
        labgrid: Figures | None = None
        if version is not None:
            labgrid, polls = run_labgrid(tmp, args.workers, args.cycles, args.concurrency)
            labgrid.name = f"labgrid {version} (gRPC, ClientSession)"
            print(labgrid.line(), flush=True)
            if polls:
                print(f"  (labgrid reservations had to be polled {polls} times)")
        ours: dict[tuple[str, str], Figures] = {}
        for kind in kinds:
            for client in clients:
                extra = ["--profile", f"{args.server_profile}.{kind}.{client}"]
                ours[kind, client] = run_ours(
                    tmp,
                    f"ours, {kind} keys (HTTP, {client})",
                    args.workers,
                    args.cycles,
                    args.concurrency,
                    kind,
                    client,
                    *(extra if args.server_profile else []),
                )
                print(ours[kind, client].line(), flush=True)
        if not args.skip_diagnostic and "rsa" in kinds:
            fixed = run_ours(
                tmp,
                f"ours, rsa keys all made before [diag] ({clients[0]})",
                args.workers,
                args.cycles,
                args.concurrency,
                "rsa",
                clients[0],
                "--fixed-keys",
            )
            print(fixed.line(), flush=True)
            if labgrid is not None:
                print(
                    "ratio ours-with-rsa-keys-made-before/labgrid: "
                    f"{fixed.rate / labgrid.rate:.2f}x"
                    " (diagnostic: what making RSA-2048 keys during the run costs)"
                )
    return labgrid, ours


def _print_ratio(key: tuple[str, str], rate: float, cpu: float) -> None:
    kind, client = key
    rate_goal = "MET" if rate >= 2 else "NOT MET"
    cpu_goal = "MET" if cpu <= 0.2 else "NOT MET"
    print(
        f"{kind:>8}, {client:<5}: cycles/s ours/labgrid {rate:.2f}x"
        + (f" (goal >= 2x: {rate_goal})" if kind == "ed25519" else "")
        + f"; server CPU per cycle ours/labgrid {cpu:.2f}x (goal <= 0.2x: {cpu_goal})",
        flush=True,
    )


if __name__ == "__main__":
    main()
