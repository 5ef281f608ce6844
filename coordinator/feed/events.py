"""The event broadcaster: each commit's stored transitions, handed over by the service in
memory, fanned out live as typed events; each edge (SSE, webhooks, metrics) writes them in
its own format. The store is read to resume a stream."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import anyio
from anyio.abc import TaskStatus

from coordinator.domain.model import SubjectKind
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import StoreUnavailable
from coordinator.feed.panels import PANEL_EVENT, PanelView
from coordinator.service.pulse import Pulse
from coordinator.store import Store
from coordinator.store.records import Numbered, TransitionQuery

logger = logging.getLogger(__name__)

PAGE: Final = 500  # transitions per store read
QUEUE: Final = 1000  # events a subscriber may have unsent before it is resynchronised
KEEPALIVE: Final = 15.0  # seconds of silence before a comment keeps proxies from closing
RETRY_AFTER_STORE_ERROR: Final = 1.0

State = RequestState | WorkerState

# Each kind's states by value: a dict lookup, where calling the enum runs Python code of
# ``enum`` for each of the two states of every transition of every commit.
_REQUEST_STATES: Final[dict[str, State]] = {s.value: s for s in RequestState}
_WORKER_STATES: Final[dict[str, State]] = {s.value: s for s in WorkerState}


def _state(kind: SubjectKind, value: str) -> State | None:
    """The state ``value`` names, of a request or else a worker ("" for none); a value no
    state has is refused as the enum refuses it (``ValueError``)."""
    if not value:
        return None
    request = kind == "request"
    found = (_REQUEST_STATES if request else _WORKER_STATES).get(value)
    return found if found is not None else (RequestState if request else WorkerState)(value)


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """A stored transition as the feed hands it on: its id, and its states as enums."""

    id: int
    at: datetime
    kind: SubjectKind
    subject: str  # request ID or worker UUID, as text
    old: State | None  # None when the subject was created
    new: State | None  # None when the subject was removed
    reason: str
    actor: str  # user name, or "" for the coordinator itself

    @classmethod
    def of(cls, stored: Numbered) -> TransitionEvent:
        t = stored.transition
        old, new = _state(t.kind, t.old), _state(t.kind, t.new)
        return cls(stored.id, t.at, t.kind, t.subject, old, new, t.reason, t.actor)


# What a subscriber receives: a stored transition, or an ephemeral event (not stored, so
# neither numbered nor replayed), of which a board's panel is the only kind.
Ephemeral = PanelView
FeedEvent = TransitionEvent | Ephemeral


def matches(query: TransitionQuery, event: FeedEvent) -> bool:
    """Whether an event passes a subscriber's filters, as the store applies them.

    A panel passes the kinds filter as ``panel`` and the subjects filter by its worker; the
    states filter does not apply to it.
    """
    if isinstance(event, PanelView):
        return (not query.kinds or PANEL_EVENT in query.kinds) and (
            not query.subjects or event.worker in query.subjects
        )
    if query.kinds and event.kind not in query.kinds:
        return False
    if query.subjects and event.subject not in query.subjects:
        return False
    if query.states:
        return any(s is not None and s.value in query.states for s in (event.old, event.new))
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
    queue: deque[FeedEvent] = field(default_factory=deque)
    ready: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, event: FeedEvent) -> None:
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


Listener = Callable[[Sequence[TransitionEvent]], None]


class Broadcaster:
    """Hands each commit's transitions, given by the service from memory (:meth:`publish`),
    to every listener, then to every subscriber, in id order, without reading the store.

    The store is read only to resume a subscriber (``after``, or one that fell behind),
    to fill a gap in the ids (a commit whose outcome the service never learnt), and when
    asked (:meth:`settled`). Nothing is done per commit beyond the listeners and the
    subscribers' queues (docs/events.md §fed from memory).
    """

    def __init__(self, store: Store, *, queue: int = QUEUE, page: int = PAGE) -> None:
        self._store = store
        self._queue = queue
        self._page = page
        self._cursor = 0  # the newest transition handed out
        self._subs: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._dirty = anyio.Event()  # set when the store must be read (a gap, or settled)
        self._advanced = Pulse()  # fired each time the cursor moves
        self._running = False
        self._early: list[Numbered] | None = None  # published while run() reads its start
        self._held: list[Numbered] = []  # published after a gap, until the gap is read
        self.store_reads = 0  # reads of new transitions (not of a subscriber's replay)

    @property
    def cursor(self) -> int:
        """The newest transition handed to every listener and subscriber."""
        return self._cursor

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of new stored events (not ephemeral ones),
        before any subscriber sees them; it must not block, as it runs inside the fan-out.
        What it does at once is done when :meth:`caught_up` returns."""
        self._listeners.append(listener)

    async def caught_up(self, event_id: int) -> None:
        """Return once every listener and subscriber has had the events up to ``event_id``
        (those stored before the broadcaster started are never handed out)."""
        while self._cursor < event_id:
            await self._advanced.wait()

    async def settled(self) -> None:
        """Return once every listener and subscriber has had every transition stored
        before this call, including any the service did not publish."""
        last = await anyio.to_thread.run_sync(self._store.last_transition_id)
        self._dirty.set()  # read now, even if the change came without a publication
        await self.caught_up(last)

    def publish(self, numbered: Sequence[Numbered]) -> None:
        """A commit's transitions, as numbered by the store, in commit order (the service
        calls this right after each commit). Never blocks and never raises."""
        if not numbered:
            return
        if self._early is not None:
            self._early.extend(numbered)
        elif not self._running:
            return  # before the start (the store has them) or after the stop
        elif self._held or numbered[0].id > self._cursor + 1:
            # Ids the service never published may lie before these: a commit that failed
            # after all, or a sequence that skipped (PostgreSQL, after a rollback). The
            # run loop reads the gap first, so that the order stays the stored one.
            self._held.extend(numbered)
            self._dirty.set()
        else:
            self._hand_out(numbered)

    def publish_ephemeral(self, event: Ephemeral) -> None:
        """Send an event that is not stored (no id, no replay), such as a board's panel."""
        for sub in list(self._subs):
            sub.offer(event)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start at the newest stored transition and hand out what is published from then
        on, until cancelled."""
        self._early = []
        try:
            self._cursor = await anyio.to_thread.run_sync(self._store.last_transition_id)
        finally:
            early, self._early = self._early, None
        self._running = True
        try:
            self.publish([n for n in early if n.id > self._cursor])
            task_status.started()
            while True:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                await self._catch_up()
        finally:
            self._running = False
            self._held = []
            self.close()

    def close(self) -> None:
        """End every subscriber's stream (at shutdown, so open streams do not hold it up)."""
        for sub in list(self._subs):
            sub.close()

    async def _catch_up(self) -> None:
        """Hand out what the store holds after the cursor and before the held events (all
        of it when none are held), then the held events up to their next gap; again while
        some are held."""
        while True:
            bound = self._held[0].id if self._held else None
            found = await self._read_after(self._cursor)
            full = len(found) == self._page
            if bound is not None:
                before = [n for n in found if n.id < bound]
                full = full and len(before) == len(found)
                found = before
            self._hand_out(found)
            if full:
                continue
            # No await since the read: nothing the store holds lies before the held events.
            held = self._held
            run = 1
            while run < len(held) and held[run].id == held[run - 1].id + 1:
                run += 1
            self._held = held[run:]
            self._hand_out(held[:run])
            if not self._held:
                return

    async def _read_after(self, after: int) -> list[Numbered]:
        while True:
            try:
                self.store_reads += 1
                return await anyio.to_thread.run_sync(
                    self._store.transitions_after, after, self._page
                )
            except Exception as exc:
                # The stream must never take the coordinator down; the cursor has not moved.
                if isinstance(exc, StoreUnavailable):
                    logger.warning("events: store unavailable; retrying")
                else:
                    logger.error("events: unexpected failure; retrying", exc_info=exc)
                await anyio.sleep(RETRY_AFTER_STORE_ERROR)

    def _hand_out(self, numbered: Sequence[Numbered]) -> None:
        """Give listeners, then subscribers, the events after the cursor, and move it on.

        Synchronous: a subscriber registered meanwhile is either before this batch (it gets
        it queued) or after it (its cursor includes it). Listeners come first, so that
        whoever reacts to an event sees their effects.
        """
        fresh = [n for n in numbered if n.id > self._cursor]
        if not fresh:
            return
        try:
            events = [TransitionEvent.of(stored) for stored in fresh]
        except ValueError:
            # A state unknown here (stored by a newer coordinator): hand out the others.
            logger.warning("events: a transition with an unknown state skipped")
            events = []
            for stored in fresh:
                with contextlib.suppress(ValueError):
                    events.append(TransitionEvent.of(stored))
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                logger.exception("events: listener %r failed", listener)
        for sub in list(self._subs):
            for event in events:
                sub.offer(event)
        self._cursor = fresh[-1].id
        self._advanced.fire()

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
    ) -> AsyncGenerator[FeedEvent | None]:
        """The subscriber's events: stored ones it is behind on, then live ones; ``None``
        after ``keepalive`` seconds without any. Ends when the broadcaster stops."""
        try:
            while not sub.closed:
                if sub.behind:
                    # Cleared before reading: what is published from now on is queued, and
                    # what came before is in the store; duplicates are skipped by id.
                    sub.behind = False
                    sub.queue.clear()
                    page = self._page
                    found = await anyio.to_thread.run_sync(
                        self._store.transitions_after, sub.last_id, page, sub.query
                    )
                    for stored in found:
                        sub.last_id = stored.id
                        yield TransitionEvent.of(stored)
                    if len(found) == page:
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
                if isinstance(event, TransitionEvent):
                    if event.id <= sub.last_id:
                        continue
                    sub.last_id = event.id
                yield event
        finally:
            self.unsubscribe(sub)
