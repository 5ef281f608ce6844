"""Real HTTP for tests: an app on uvicorn at 127.0.0.1 in the test's loop, and an SSE reader."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def serving(app: ASGIApp, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its base URL.

    ``httpx.ASGITransport`` buffers whole responses, so streams need a real server.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    up = anyio.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            up.set()

    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = Server(config)
    port = sock.getsockname()[1]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await up.wait()
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


@dataclass
class Sse:
    """One parsed event; ``data`` decoded from JSON."""

    event: str
    data: Any
    id: int | None = None


@dataclass
class SseReader:
    """Reads events (and counts comment lines) from a streaming httpx response."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    _lines: AsyncIterator[str] | None = None

    async def next(self, seconds: float = 10) -> Sse:
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        fields: dict[str, str] = {}
        with anyio.fail_after(seconds):
            async for line in self._lines:
                if line == "":
                    if fields:
                        ident = fields.get("id")
                        return Sse(
                            fields["event"],
                            json.loads(fields["data"]),
                            None if ident is None else int(ident),
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
        raise AssertionError("the stream ended")

    async def take(self, n: int, seconds: float = 10) -> list[Sse]:
        return [await self.next(seconds) for _ in range(n)]


@asynccontextmanager
async def subscribe(
    client: httpx.AsyncClient, path: str = "/api/v1/events", **kw: Any
) -> AsyncIterator[SseReader]:
    async with client.stream("GET", path, **kw) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)
