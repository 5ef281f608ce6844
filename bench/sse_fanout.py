"""SSE fan-out: events per second to N subscribers of a coordinator process over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

READY = re.compile(rb"coordinator ready on http://([\d.]+):(\d+)")


async def _subscriber(url: str, token: str, want: int, ready: Any, done: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(60, read=60)
    async with (
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream("GET", f"{url}/api/v1/events", headers=headers) as answer,
    ):
        ready()
        got = 0
        async for line in answer.aiter_lines():
            if line.startswith("id: "):
                got += 1
                if got == want:
                    done.append(time.perf_counter())
                    return


def _start(db: Path, sqlite_sync: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """A real coordinator process (so the subscribers' parsing does not share its CPU)."""
    cli = [sys.executable, "-m", "coordinator", "--db", str(db)]
    subprocess.run([*cli, "migrate"], check=True, capture_output=True)
    out = subprocess.run([*cli, "user", "add", "bench"], check=True, capture_output=True)
    token = out.stdout.decode().strip().splitlines()[-1]
    config = db.parent / "bench.toml"
    config.write_text(f'sqlite_sync = "{sqlite_sync}"\n')
    command = [*cli[:3], "--config", str(config), *cli[3:], "serve", "--http", "127.0.0.1:0"]
    log = db.parent / "coordinator.log"
    with log.open("wb") as sink:  # a file, not a pipe nobody drains
        process = subprocess.Popen([*command, "--link", ""], stderr=sink, stdout=sink)
    for _ in range(600):
        found = READY.search(log.read_bytes())
        if found:
            return process, f"http://{found[1].decode()}:{found[2].decode()}", token
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("the coordinator did not start")


async def bench(subscribers: int, requests: int, creators: int, sqlite_sync: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, url, token = _start(Path(tmp) / "bench.db", sqlite_sync)
        try:
            await _measure(url, token, subscribers, requests, creators)
        finally:
            process.terminate()
            process.wait(30)


async def _measure(url: str, token: str, subscribers: int, requests: int, creators: int) -> None:
    # No worker is registered, so each request is WAITING and then INVALID: two events.
    want = 2 * requests
    done: list[float] = []
    connected = 0
    all_in = anyio.Event()

    def ready() -> None:
        nonlocal connected
        connected += 1
        if connected == subscribers:
            all_in.set()

    headers = {"Authorization": f"Bearer {token}"}

    async def create(api: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            answer = await api.post("/api/v1/reqs/", json={"Priority": 4})
            assert answer.status_code == 201, answer.text

    async with anyio.create_task_group() as subs:
        for _ in range(subscribers):
            subs.start_soon(_subscriber, url, token, want, ready, done)
        await all_in.wait()
        start = time.perf_counter()
        async with (
            httpx.AsyncClient(base_url=url, headers=headers) as api,
            anyio.create_task_group() as tg,
        ):
            for n in range(creators):
                tg.start_soon(create, api, requests // creators + (n < requests % creators))
        created = time.perf_counter()
    ends = sorted(t - start for t in done)
    delivered = want * len(done)
    print(f"subscribers            {subscribers} (SSE over HTTP to a coordinator process)")
    print(f"requests created       {requests} ({want} events) in {created - start:.2f} s")
    print(f"events delivered       {delivered} in {ends[-1]:.2f} s")
    print(f"fan-out rate           {delivered / ends[-1]:,.0f} events/s summed over subscribers")
    print(f"per subscriber         {want / statistics.median(ends):,.0f} events/s (median)")
    print(f"last subscriber done   {ends[-1] - (created - start):.3f} s after the last create")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--creators", type=int, default=8, help="concurrent API clients")
    parser.add_argument("--sqlite-sync", choices=("FULL", "NORMAL"), default="NORMAL")
    args = parser.parse_args()
    asyncio.run(bench(args.subscribers, args.requests, args.creators, args.sqlite_sync))


if __name__ == "__main__":
    main()
