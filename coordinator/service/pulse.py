"""``Pulse``: wake whoever waits for the next time something happens.

The usual idiom sets an ``Event`` and replaces it with a new one each time; on the
commit path that made an event per commit for each of several watchers that mostly
nobody was waiting on. A pulse makes its event only when someone waits.
"""

from __future__ import annotations

import asyncio


class Pulse:
    """Each ``fire`` wakes every task in ``wait`` at that moment, and no later one."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def fire(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self) -> None:
        """Return after the next ``fire``."""
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()
