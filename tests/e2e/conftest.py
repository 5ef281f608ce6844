"""End-to-end fixtures: real coordinator processes on a real SQLite file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

READY = re.compile(rb"coordinator ready on http://([\d.]+):(\d+)")


@dataclass
class Coordinator:
    """A running ``python -m coordinator serve`` and how to reach it."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def run_cli(db: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "coordinator", "--db", str(db), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout.decode()


def start(db: Path, log: Path) -> Coordinator:
    """Start a coordinator on a free port and wait for its ready line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    offset = log.stat().st_size if log.exists() else 0  # earlier runs' lines are not ours
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator",
                "--db",
                str(db),
                "serve",
                "--http",
                "127.0.0.1:0",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    for _ in range(600):  # the ready line, or give up after about 30 s
        if (m := READY.search(log.read_bytes()[offset:])) is not None:
            return Coordinator(process, f"http://{m[1].decode()}:{m[2].decode()}")
        if process.poll() is not None:
            break
        try:
            process.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    raise AssertionError(f"coordinator did not start:\n{log.read_text()}")


@pytest.fixture
def coordinators(tmp_path: Path) -> Iterator[list[Coordinator]]:
    """Every coordinator a test starts; all killed at the end."""
    started: list[Coordinator] = []
    yield started
    for c in started:
        if c.process.poll() is None:
            c.process.terminate()  # a graceful stop, so the process can write its coverage
            c.process.wait(20)


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
