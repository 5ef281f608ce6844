"""Real HTTP for tests: an app served by uvicorn at 127.0.0.1 in the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def serving(app: ASGIApp, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its base URL.

    ``httpx.ASGITransport`` buffers whole responses, so streams need a real server.
    """
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    async with serving_config(config) as (host, port):
        yield f"http://{host}:{port}"


@asynccontextmanager
async def serving_config(
    config: uvicorn.Config, backlog: int = 128
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``config`` on a free loopback port until the block ends; yields the address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    up = anyio.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            up.set()

    server = Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await up.wait()
            try:
                host, port = sock.getsockname()[:2]
                yield host, port
            finally:
                server.should_exit = True
    finally:
        sock.close()
