"""Server-sent events for tests: subscribe to a stream and read its parsed events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx


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
