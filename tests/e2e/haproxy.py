"""HAProxy from docs/examples/haproxy.cfg, run for a test: render, start, wait, stop."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HAPROXY = "/usr/sbin/haproxy"
EXAMPLE = Path(__file__).resolve().parents[2] / "docs/examples/haproxy.cfg"
_BIND = re.compile(r"^(\s*bind\s+)\S+(.*)$")
_SERVER = re.compile(r"^(\s*server\s+)\S+\s+\S+(.*)$")


def haproxy() -> str:
    """The HAProxy binary, or a failure that says how to get it."""
    if not Path(HAPROXY).exists():
        pytest.fail(
            f"{HAPROXY} not found: install the Debian package haproxy (scripts/install.sh "
            "does), or deselect these tests",
            pytrace=False,
        )
    return HAPROXY


def render(listen: str, servers: list[str], example: str | None = None) -> str:
    """The example with its one ``bind`` address replaced by ``listen`` and its ``server``
    lines by one per address of ``servers`` (named c0, c1, …, each with the options of
    the example's first server line). Anything else is left as the example says.

    :raises ValueError: when the example no longer has that shape.
    """
    lines = (EXAMPLE.read_text() if example is None else example).splitlines()
    binds = [n for n, line in enumerate(lines) if _BIND.match(line)]
    found = [n for n, line in enumerate(lines) if _SERVER.match(line)]
    if len(binds) != 1 or not found:
        raise ValueError(f"{EXAMPLE}: expected one `bind` line and `server` lines")
    if found != list(range(found[0], found[-1] + 1)):
        raise ValueError(f"{EXAMPLE}: the `server` lines must follow each other")
    bind = _BIND.match(lines[binds[0]])
    first = _SERVER.match(lines[found[0]])
    assert bind is not None and first is not None
    lines[binds[0]] = f"{bind[1]}{listen}{bind[2]}"
    ours = [f"{first[1]}c{n} {address}{first[2]}" for n, address in enumerate(servers)]
    lines[found[0] : found[-1] + 1] = ours
    return "\n".join(lines) + "\n"


@dataclass
class Haproxy:
    """A running ``haproxy -db`` (in the foreground) and its frontend's URL."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def start_haproxy(tmp: Path, listen: str, servers: list[str], ready: float = 60) -> Haproxy:
    """Run HAProxy with the example rendered for ``listen`` (HOST:PORT) and ``servers``;
    returns once its frontend answers ``/healthz`` with 200 (some server is up), within
    ``ready`` seconds."""
    config = tmp / "haproxy.cfg"
    config.write_text(render(listen, servers))
    log = tmp / "haproxy.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [haproxy(), "-f", str(config), "-db"], stdout=sink, stderr=subprocess.STDOUT
        )
    proxy = Haproxy(process, f"http://{listen}", log)
    deadline = time.monotonic() + ready
    while not _healthy(proxy.url):
        if process.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            raise AssertionError(f"haproxy did not serve {listen}:\n{log.read_text()}")
        time.sleep(0.1)
    return proxy


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at HOST:PORT now."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True
