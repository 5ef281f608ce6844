"""List answers written in chunks, with a checkpoint between them, so that a long list does
not hold the event loop in one step (docs/events.md §long steps)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import anyio.lowlevel

from coordinator import boruta_json as bj

T = TypeVar("T")

CHUNK: Final = 200  # items per step: about 1 ms of encoding for requests (5 on a busy host)


async def json_list(items: Sequence[T], to_json: Callable[[T], object]) -> bytes:
    """The bytes of ``bj.answer_bytes([to_json(i) for i in items])``, made a chunk at a time."""
    if len(items) <= CHUNK:
        return bj.answer_bytes([to_json(item) for item in items])
    parts: list[bytes] = []
    for start in range(0, len(items), CHUNK):
        if start:
            await anyio.lowlevel.checkpoint()  # let other requests run between chunks
        part = bj.answer_bytes([to_json(item) for item in items[start : start + CHUNK]])
        parts.append(part[1:-1])  # without the chunk's own brackets
    return b"[" + b",".join(parts) + b"]"
