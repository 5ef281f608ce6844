"""Real coordinator processes: start one and wait until ready, run its CLI, talk to it."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

READY = re.compile(rb"coordinator ready on http://([\d.]+):(\d+)")
LINK_READY = re.compile(rb"dryad link listening on ([\d.]+):(\d+)")
TUNNELS = 50  # ports in a test coordinator's tunnel range: more than the jobs a test runs


def free_port() -> int:
    """A loopback port nobody listens on now (for a service that must keep its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_range(host: str, count: int) -> tuple[int, int]:
    """``count`` consecutive ports that nobody listens on at ``host`` now: a coordinator's
    tunnel range of its own, as another test's coordinator on this host may run beside it
    (docs/failover.md §tunnel range claim)."""
    for _ in range(200):
        first = free_port()
        if first + count > 65000:
            continue
        if all(_bindable(host, p) for p in range(first, first + count)):
            return first, first + count - 1
    raise AssertionError(f"no {count} consecutive free ports on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Coordinator:
    """A running ``python -m coordinator serve`` and how to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    link: str = ""  # HOST:PORT of the dryad link

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


def start(
    db: Path, log: Path, link: str = "127.0.0.1:0", *extra: str, nofile: int | None = None
) -> Coordinator:
    """Start a coordinator on a free HTTP port and wait for its ready lines.

    :param nofile: its open-file limit, soft and hard (so it cannot raise it).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    offset = log.stat().st_size if log.exists() else 0  # earlier runs' lines are not ours
    if "--config" not in extra:
        extra = ("--config", str(_own_range(log)), *extra)
    command = [
        sys.executable,
        "-m",
        "coordinator",
        "--db",
        str(db),
        *extra,
        "serve",
        "--http",
        "127.0.0.1:0",
        "--link",
        link,
    ]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=None if nofile is None else partial(_limit_open_files, nofile),
        )
    return Coordinator(process, *_wait_ready(process, log, offset, bool(link)))


def _own_range(log: Path) -> Path:
    """A config file beside ``log`` with a tunnel range of its own, kept for restarts."""
    config = log.with_name(f"{log.stem}.tunnels.toml")
    if not config.exists():
        first, last = free_range("127.0.0.1", TUNNELS)
        config.write_text(f'tunnel_ports = "{first}-{last}"\n')
    return config


def _limit_open_files(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def _wait_ready(
    process: subprocess.Popen[bytes], log: Path, offset: int, with_link: bool
) -> tuple[str, str]:
    for _ in range(600):  # the ready lines, or give up after about 30 s
        text = log.read_bytes()[offset:]
        http, link = READY.search(text), LINK_READY.search(text)
        if http is not None and (link is not None or not with_link):
            where = f"{link[1].decode()}:{link[2].decode()}" if link else ""
            return f"http://{http[1].decode()}:{http[2].decode()}", where
        if process.poll() is not None:
            break
        try:
            process.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    raise AssertionError(f"coordinator did not start:\n{log.read_text()}")


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
