"""Idle-connection floods against a coordinator at a 1,024 open-file limit: /healthz and
an API call for a well-behaved client, and the coordinator's RSS, as the flood grows.

A flood client holds N connections that never send a byte (from 30 loopback source
addresses), re-opening those the server closes at up to 500 a second, as slow-connection
attack tools do. For each N this prints: the connections the server holds for the flood
(from /proc/net/tcp), the well-behaved client's /healthz and list latency (p50/p99, a
new connection each time), the number of its calls that failed, and the server's RSS.
Goal (issue 13): /healthz under 50 ms at every N.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import READY, Process, cli_user, coordinator_argv, free_port, percentile

SOURCES = [f"127.0.0.{n}" for n in range(2, 32)]
REOPEN_PER_SECOND = 500


class Flood:
    """Holds ``n`` silent connections, re-opening closed ones at a bounded rate."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n, self.opened = port, n, 0
        self._watch = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        for _ in range(self.n):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for key in list(self._watch.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._watch.close()

    def _open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((SOURCES[self.opened % len(SOURCES)], 0))
        s.connect_ex(("127.0.0.1", self.port))
        self._watch.register(s, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        budget = 0.0
        while not self._stop.is_set():
            budget = min(budget + REOPEN_PER_SECOND * 0.1, REOPEN_PER_SECOND)
            for key, _ in self._watch.select(timeout=0.1):
                self._watch.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                if budget >= 1:
                    budget -= 1
                    self._open()


def held_by_server(port: int) -> int:
    """Established connections on the server's side of ``port`` (from /proc/net/tcp)."""
    local = f":{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(local) and fields[3] == "01":
            count += 1
    return count


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def well_behaved(url: str, token: str, calls: int) -> tuple[list[float], list[float], int]:
    healthz: list[float] = []
    listing: list[float] = []
    failed = 0
    for _ in range(calls):
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                start = time.perf_counter()
                ok = http.get("/healthz").status_code == 200
                healthz.append(time.perf_counter() - start)
                start = time.perf_counter()
                answer = http.post(
                    "/api/v1/reqs/list", headers={"Authorization": f"Bearer {token}"}
                )
                listing.append(time.perf_counter() - start)
                failed += not ok or answer.status_code != 200
        except httpx.HTTPError:
            failed += 1
    return healthz, listing, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0,500,1000,2000,4000,8000")
    parser.add_argument("--calls", type=int, default=100, help="well-behaved calls per size")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds the flood
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "flood.db"
        token = cli_user(db, "bench")
        port = free_port()
        argv = coordinator_argv(db, "serve", "--http", f"127.0.0.1:{port}", "--link", "")
        server = Process(["prlimit", "--nofile=1024:1024", "--", *argv], Path(tmp) / "log")
        try:
            server.wait_for(READY)
            url = f"http://127.0.0.1:{port}"
            print(f"coordinator at {url}, open-file limit 1024 (soft and hard)")
            print(
                f"{'flood':>6} {'held':>6}  {'healthz p50':>11} {'p99':>8}  "
                f"{'list p50':>9} {'p99':>8}  {'failed':>6}  {'RSS':>8}"
            )
            for n in (int(x) for x in args.sizes.split(",")):
                with Flood(port, n):
                    time.sleep(2)  # the flood settles: evictions and re-opens under way
                    held = held_by_server(port)
                    healthz, listing, failed = well_behaved(url, token, args.calls)
                    rss = rss_mb(server.popen.pid)
                h50, h99 = (percentile(healthz, q) * 1000 for q in (50, 99))
                l50, l99 = (percentile(listing, q) * 1000 for q in (50, 99))
                print(
                    f"{n:>6} {held:>6}  {h50:>8.1f} ms {h99:>5.1f} ms  "
                    f"{l50:>6.1f} ms {l99:>5.1f} ms  {failed:>6}  {rss:>5.1f} MB"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
