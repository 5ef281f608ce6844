"""Helpers shared by the benchmarks: processes, ports, users, percentiles, seeding."""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Job, Request, User, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
READY = re.compile(rb"coordinator ready on http://([\d.]+):(\d+)")
BOARD_CAPS = {"board": "bench", "arch": "armv7"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def uuid_of(n: int) -> WorkerUUID:
    return WorkerUUID(f"00000000-0000-4000-8000-{n:012d}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def add_user(store: SqlStore, name: str, admin: bool = False) -> str:
    """Create a user in the store and return its token."""
    token = new_token()
    store.add_user(User(name, admin=admin), hash_token(token))
    return token


class Process:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._offset = log.stat().st_size if log.exists() else 0
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                list(argv),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )

    def output(self) -> bytes:
        return self.log.read_bytes()[self._offset :]

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float = 60) -> re.Match[bytes]:
        """Wait for ``pattern`` in the output; raise when the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.output())
            if found is not None:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.005)
        self.stop()
        tail = self.output()[-3000:].decode(errors="replace")
        raise RuntimeError(f"{self.popen.args!r} did not print {pattern.pattern!r}:\n{tail}")

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def coordinator_argv(db: Path | str, *args: str) -> list[str]:
    """``boruta-coordinator --db DB ARGS``: the venv's console script (else ``-m``)."""
    script = Path(sys.executable).parent / "boruta-coordinator"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "coordinator"]
    return [*head, "--db", str(db), *args]  # --config and --db go before the subcommand


def start_coordinator(db: Path, log: Path, config: Path | None = None) -> tuple[Process, str]:
    """``boruta-coordinator serve`` on a free loopback port; returns it and its base URL."""
    args = ["--config", str(config)] if config is not None else []
    argv = coordinator_argv(db, *args, "serve", "--http", f"127.0.0.1:{free_port()}")
    proc = Process(argv, log)
    found = proc.wait_for(READY)
    return proc, f"http://{found[1].decode()}:{found[2].decode()}"


def cli_user(db: Path | str, name: str) -> str:
    """``boruta-coordinator user add NAME``; the token is the last line it prints."""
    out = subprocess.run(
        coordinator_argv(db, "user", "add", name), capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        raise RuntimeError(f"user add failed: {out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/healthz did not answer 200")
        time.sleep(0.01)


# ---- seeding the SQLite file directly through the store ---------------------------------

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def seed_worker(n: int, state: WorkerState, caps: dict[str, str]) -> Worker:
    uuid = uuid_of(n)
    return Worker(
        uuid=uuid,
        state=state,
        caps={"UUID": uuid, **caps},
        groups=(),
        registered=EPOCH,
        changed=EPOCH,
        ssh_address=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:22",
    )


def seed_request(
    rid: int,
    owner: str,
    caps: dict[str, str],
    state: RequestState = RequestState.WAITING,
    worker: WorkerUUID | None = None,
) -> Request:
    created = EPOCH + timedelta(milliseconds=rid)
    job = None
    if worker is not None:
        job = Job(worker, started=created, timeout=FAR)
    return Request(
        id=RequestID(rid),
        priority=1 + rid % 16,
        owner=owner,
        groups=(),
        caps=caps,
        valid_after=created,
        deadline=FAR,
        state=state,
        created=created,
        queued=rid,
        job=job,
    )


def seed(store: SqlStore, requests: Sequence[Request], workers: Sequence[Worker]) -> None:
    """Commit requests and workers in batches (no transitions: only the end state matters)."""
    store.commit(Changes(workers=list(workers)))
    for start in range(0, len(requests), 2000):
        store.commit(Changes(requests=list(requests[start : start + 2000])))
