"""The event broadcaster: stored transitions, read by id after each change, fanned out live."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import anyio
from anyio.abc import TaskStatus

from coordinator.errors import StoreUnavailable
from coordinator.service.operations import Service
from coordinator.store import Store
from coordinator.store.records import Numbered, TransitionQuery

logger = logging.getLogger(__name__)

PAGE: Final = 500  # transitions per store read
QUEUE: Final = 1000  # events a subscriber may have unsent before it is resynchronised
KEEPALIVE: Final = 15.0  # seconds of silence before a comment keeps proxies from closing
RETRY_AFTER_STORE_ERROR: Final = 1.0


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event: a stored transition (with its id) or an ephemeral one (without)."""

    event: str  # "request", "worker", or an ephemeral kind such as "panel"
    data: Mapping[str, object]
    id: int | None = None

    def frame(self) -> bytes:
        """The event in ``text/event-stream`` form."""
        head = "" if self.id is None else f"id: {self.id}\n"
        body = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"{head}event: {self.event}\ndata: {body}\n\n".encode()


KEEPALIVE_FRAME: Final = b": keepalive\n\n"


def rfc3339(when: datetime) -> str:
    """UTC with ``Z`` and the fraction without trailing zeros, as the API writes times."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def event_of(stored: Numbered) -> Event:
    t = stored.transition
    data = {
        "id": stored.id,
        "kind": t.kind,
        "subject": t.subject,
        "old": t.old,
        "new": t.new,
        "reason": t.reason,
        "actor": t.actor,
        "at": rfc3339(t.at),
    }
    return Event(t.kind, data, stored.id)


def matches(query: TransitionQuery, event: Event) -> bool:
    """Whether an event passes a subscriber's filters, as the store applies them.

    An ephemeral event passes the kinds filter by its event name and the subjects filter
    by its ``subject`` field; the states filter does not apply to it.
    """
    data = event.data
    if query.kinds and event.event not in query.kinds:
        return False
    if query.subjects and str(data.get("subject", "")) not in query.subjects:
        return False
    if query.states and event.id is not None:
        return data.get("old") in query.states or data.get("new") in query.states
    return True


@dataclass(eq=False)
class Subscription:
    """One subscriber's bounded queue; on overflow it is emptied and marked ``behind``, and
    the subscriber reads what it missed from the store by id."""

    query: TransitionQuery
    last_id: int
    size: int = QUEUE
    behind: bool = False
    closed: bool = False
    queue: deque[Event] = field(default_factory=deque)
    ready: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, event: Event) -> None:
        if self.closed or self.behind or not matches(self.query, event):
            return
        if len(self.queue) >= self.size:
            self.behind = True
            self.queue.clear()  # the store has them all; nothing waits on this subscriber
        else:
            self.queue.append(event)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


Listener = Callable[[Sequence[Event]], None]


class Broadcaster:
    """Wakes on ``Service.changed()``, reads the new transitions from the store in a worker
    thread and hands them to every subscriber and listener, in id order."""

    def __init__(self, service: Service, store: Store, *, queue: int = QUEUE) -> None:
        self._service = service
        self._store = store
        self._queue = queue
        self._cursor = 0  # the newest transition handed out
        self._subs: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._dirty = anyio.Event()
        self._running = False

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of new stored events (not ephemeral ones); it
        must not block, as it runs inside the fan-out."""
        self._listeners.append(listener)

    def publish_ephemeral(self, event: str, data: dict[str, object]) -> None:
        """Send an event that is not stored (no id, no replay), such as a board's panel."""
        ephemeral = Event(event, dict(data))
        for sub in list(self._subs):
            sub.offer(ephemeral)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start at the newest stored transition and follow the service until cancelled."""
        self._cursor = await anyio.to_thread.run_sync(self._store.last_transition_id)
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch)
                task_status.started()
                while True:
                    await self._dirty.wait()
                    self._dirty = anyio.Event()
                    await self._catch_up()
        finally:
            self._running = False
            self.close()

    def close(self) -> None:
        """End every subscriber's stream (at shutdown, so open streams do not hold it up)."""
        for sub in list(self._subs):
            sub.close()

    async def _watch(self) -> None:
        # Between waking and waiting again nothing else runs, so no change is lost; changes
        # that came meanwhile are in the store, and the next read takes them all.
        while True:
            await self._service.changed()
            self._dirty.set()

    async def _catch_up(self) -> None:
        while True:
            try:
                found = await anyio.to_thread.run_sync(
                    self._store.transitions_after, self._cursor, PAGE
                )
            except Exception as exc:
                # The stream must never take the coordinator down; the cursor has not moved.
                if isinstance(exc, StoreUnavailable):
                    logger.warning("events: store unavailable; retrying")
                else:
                    logger.error("events: unexpected failure; retrying", exc_info=exc)
                await anyio.sleep(RETRY_AFTER_STORE_ERROR)
                continue
            if not found:
                return
            events = [event_of(stored) for stored in found]
            self._cursor = found[-1].id
            # No await from here on: a subscriber registered now is either before this
            # batch (it gets it queued) or after it (its cursor includes it).
            for sub in list(self._subs):
                for event in events:
                    sub.offer(event)
            for listener in self._listeners:
                try:
                    listener(events)
                except Exception:
                    logger.exception("events: listener %r failed", listener)
            if len(found) < PAGE:
                return

    def subscribe(self, query: TransitionQuery, after: int | None = None) -> Subscription:
        """Register a subscriber now, so that it misses nothing published from here on;
        with ``after``, it first reads the stored events after that id. Pass it to
        :meth:`stream`, and to :meth:`unsubscribe` when done."""
        sub = Subscription(query, self._cursor if after is None else after, self._queue)
        sub.behind = after is not None  # replay from the store first
        if not self._running:
            sub.close()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        self._subs.discard(sub)

    async def stream(
        self, sub: Subscription, keepalive: float = KEEPALIVE
    ) -> AsyncGenerator[Event | None]:
        """The subscriber's events: stored ones it is behind on, then live ones; ``None``
        after ``keepalive`` seconds without any. Ends when the broadcaster stops."""
        try:
            while not sub.closed:
                if sub.behind:
                    # Cleared before reading: what is published from now on is queued, and
                    # what came before is in the store; duplicates are skipped by id.
                    sub.behind = False
                    sub.queue.clear()
                    found = await anyio.to_thread.run_sync(
                        lambda: self._store.transitions_after(sub.last_id, PAGE, sub.query)
                    )
                    for stored in found:
                        sub.last_id = stored.id
                        yield event_of(stored)
                    if len(found) == PAGE:
                        sub.behind = True
                    continue
                if not sub.queue:
                    sub.ready = anyio.Event()
                    with anyio.move_on_after(keepalive):
                        await sub.ready.wait()
                    if not sub.queue and not sub.behind and not sub.closed:
                        yield None
                    continue
                event = sub.queue.popleft()
                if event.id is not None:
                    if event.id <= sub.last_id:
                        continue
                    sub.last_id = event.id
                yield event
        finally:
            self.unsubscribe(sub)
