"""Webhook deliveries: stored per event and hook from the events handed over in memory,
signed, sent in the background in event order, retried from the store."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import TaskStatus

from coordinator.boruta_json import contained
from coordinator.errors import StoreUnavailable
from coordinator.feed.events import TransitionEvent
from coordinator.feed.render import compact, transition_json
from coordinator.service.pulse import Pulse
from coordinator.store import Store
from coordinator.store.records import Delivery, DeliveryStatus
from coordinator.wire.limits import has_surrogate

logger = logging.getLogger(__name__)

CURSOR: Final = "webhooks"  # this reader's row in feed_cursors
PAGE: Final = 500
MEMORY: Final = 1000  # deliveries queued in memory at most; more wait in the store
RETRY_AFTER_STORE_ERROR: Final = 1.0
USER_AGENT: Final = "boruta-coordinator webhooks"


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """How deliveries are sent and retried."""

    timeout: float = 10.0  # seconds per attempt
    max_attempts: int = 8
    backoff: float = 1.0  # seconds before the 2nd attempt; doubled for each further one
    max_backoff: float = 3600.0
    concurrency: int = 16  # attempts in flight at once


def sign(secret: str, body: bytes) -> str:
    """The ``Boruta-Signature`` header: ``sha256=`` and the HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def where(url: str) -> str:
    """A URL's scheme, host and port only, for logs (its path or query may hold a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True, slots=True)
class _Item:
    """A delivery to attempt, with where to send it and its event."""

    delivery: Delivery
    url: str
    secret: str = field(repr=False)
    event: TransitionEvent


class Webhooks:
    """Turns new transitions, handed over in memory, into stored deliveries (moving a
    cursor, so that nothing is lost or repeated across a restart) and sends them with an
    ``httpx.AsyncClient``: first attempts from memory, one at a time per webhook in event
    order; retries, and what was pending at a restart, from the store
    (docs/events.md §webhooks from memory).

    Without webhooks a commit costs nothing here; with some, one write per batch of
    transitions (the deliveries and the cursor) and no read of the transitions.
    """

    def __init__(
        self,
        store: Store,
        policy: WebhookPolicy | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        memory: int = MEMORY,
    ) -> None:
        self._store = store
        self.policy = policy or WebhookPolicy()
        self._transport = transport
        self._now = now
        self._memory = memory
        self._new = anyio.Event()
        # None until the active webhooks are read at the start; then whether there are any.
        self._hooked: bool | None = None
        self._reload = True  # read the webhooks again (at the start, or one was changed)
        self._backlog = True  # read transitions from the store (at the start, after a failure)
        self._buffer: list[TransitionEvent] = []  # handed over, deliveries not stored yet
        self._lanes: dict[int, deque[_Item]] = {}  # per webhook, attempts in event order
        self._owned: set[int] = set()  # deliveries in a lane or being attempted
        self._spilled = False  # some were left in the store for want of room in memory
        self._tg: anyio.abc.TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        # When the store next has a delivery due that memory does not hold; None: never.
        self._due_at: datetime | None = None
        self._due = anyio.Event()  # wakes the loop that reads due deliveries
        # Attempts finished while a read of the due deliveries was under way may show in it
        # as still due; they are noted during a read only (None: no read under way), so
        # that the due loop can skip them.
        self._finished: set[int] | None = None
        self._outcomes = 0  # delivery outcomes stored so far
        self._recorded = anyio.Event()  # set (and replaced) after each stored outcome
        # The newest transition handed to ``wake``, and the newest one whose deliveries
        # are stored (or that no webhook wanted).
        self._woken = 0
        self._enqueued = 0
        self._progress = Pulse()  # fired when ``_enqueued`` moves
        self._limiter = anyio.CapacityLimiter(self.policy.concurrency)
        self._turn = anyio.Lock()  # adding deliveries, or reading the due ones
        self.store_reads = 0  # reads of transitions or due deliveries, for tests

    @property
    def outcomes(self) -> int:
        """How many delivery outcomes have been stored since the start."""
        return self._outcomes

    async def recorded(self, after: int) -> None:
        """Return once more than ``after`` outcomes are stored: read :attr:`outcomes` before
        looking at the deliveries, then wait with it, and no outcome goes unnoticed."""
        while self._outcomes <= after:
            await self._recorded.wait()

    async def caught_up(self, event_id: int) -> None:
        """Return once the deliveries of every transition up to ``event_id`` are stored
        (they may not be sent yet); the transition must reach :meth:`wake`."""
        while self._enqueued < event_id:
            await self._progress.wait()

    def wake(self, events: Sequence[TransitionEvent] = ()) -> None:
        """New transitions are stored (a broadcaster listener), or, called without any, a
        webhook was added or deleted."""
        if not events:
            self._reload = True
        else:
            self._woken = max(self._woken, events[-1].id)
            if not self._hooked:
                # Nobody to deliver to (a webhook added meanwhile is read with its backlog).
                if self._hooked is False and not self._reload and not self._buffer:
                    self._advance(self._woken)
                    return
            else:
                self._buffer.extend(events)
        self._new.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Resume pending deliveries and follow new events until cancelled."""
        timeout = httpx.Timeout(self.policy.timeout)
        async with (
            httpx.AsyncClient(
                timeout=timeout, transport=self._transport, headers={"User-Agent": USER_AGENT}
            ) as client,
            anyio.create_task_group() as tg,
        ):
            self._tg, self._client = tg, client
            # Events stored while we were down, and deliveries left pending, before we say
            # we started.
            self._reload = self._backlog = True
            await self._step()
            async with self._turn:
                await self._read_due()
            tg.start_soon(self._enqueue_loop)
            tg.start_soon(self._due_loop)
            task_status.started()

    def _advance(self, woken: int) -> None:
        if woken > self._enqueued:
            self._enqueued = woken
            self._progress.fire()

    async def _enqueue_loop(self) -> None:
        while True:
            await self._new.wait()
            self._new = anyio.Event()
            await self._step()

    async def _step(self) -> None:
        """Read the webhooks or the backlog if asked to, else store the buffered events'
        deliveries and queue them."""
        # Stored before this step began, so this step handles them all.
        woken = self._woken
        try:
            if self._reload:
                self._reload = False
                hooks = await anyio.to_thread.run_sync(self._store.webhooks)
                self._hooked = bool(hooks)
                self._backlog = True  # events a new webhook came before are stored
            if self._backlog:
                # Everything buffered is stored, so this read covers it; what is
                # buffered meanwhile is skipped by the store's cursor if seen twice.
                self._buffer = []
                self.store_reads += 1
                read, added = await anyio.to_thread.run_sync(
                    self._store.enqueue_deliveries, CURSOR, self._now(), PAGE
                )
                self._backlog = read == PAGE
                if added:
                    self._wake_due(self._now())  # these are sent from the store
            elif self._buffer:
                events, self._buffer = self._buffer, []
                await self._enqueue(events)
        except Exception as exc:
            # Webhooks must never take the coordinator down; the cursor has not moved.
            _log_failure(exc)
            await anyio.sleep(RETRY_AFTER_STORE_ERROR)
            self._reload = self._backlog = True  # the buffered events are in the store
            self._new.set()
            return
        if not (self._backlog or self._reload):
            self._advance(woken)
        if self._backlog or self._buffer or self._reload:
            self._new.set()

    async def _enqueue(self, events: list[TransitionEvent]) -> None:
        pairs = [(e.id, e.kind) for e in events]
        # Not while the due loop reads: it would see these as due before they are queued.
        async with self._turn:
            made = await anyio.to_thread.run_sync(
                self._store.add_deliveries, CURSOR, pairs, self._now()
            )
            by_id = {e.id: e for e in events}
            for new in made:
                item = _Item(new.delivery, new.url, new.secret, by_id[new.delivery.event_id])
                self._push(item)

    def _push(self, item: _Item, *, stored: bool = False) -> bool:
        """Queue an attempt in its webhook's lane, if memory has room; else it stays due in
        the store, which the due loop reads once the lanes have drained. Once some are
        left there, later ones from memory are too, so that each lane keeps event order
        until the due loop has caught up (``stored``: it is the due loop pushing)."""
        if item.delivery.id in self._owned:
            return True
        if len(self._owned) >= self._memory or (self._spilled and not stored):
            self._spilled = True
            return False
        hook = item.delivery.hook_id
        self._owned.add(item.delivery.id)
        lane = self._lanes.get(hook)
        if lane is None:
            lane = self._lanes[hook] = deque()
            assert self._tg is not None and self._client is not None
            self._tg.start_soon(self._drain, hook, lane, self._client)
        lane.append(item)
        return True

    async def _drain(self, hook: int, lane: deque[_Item], client: httpx.AsyncClient) -> None:
        """Attempt a webhook's queued deliveries one after another, in order."""
        try:
            while lane:
                item = lane[0]
                try:
                    async with self._limiter:
                        await self._attempt(client, item)
                finally:
                    lane.popleft()
                    self._finish(item.delivery.id)
        finally:
            self._lanes.pop(hook, None)
            for left in lane:  # cancelled: they are still due in the store
                self._owned.discard(left.delivery.id)

    def _finish(self, delivery_id: int) -> None:
        if self._finished is not None:
            self._finished.add(delivery_id)
        self._owned.discard(delivery_id)
        if self._spilled and len(self._owned) <= self._memory // 2:
            self._wake_due(self._now())

    def _wake_due(self, at: datetime) -> None:
        """Have the due loop read the store at ``at`` (or earlier, if it would anyway)."""
        if self._due_at is None or at < self._due_at:
            self._due_at = at
            self._due.set()

    async def _due_loop(self) -> None:
        """Read the due deliveries only when the store holds some that memory does not:
        at the start, at a retry's time, and after a spill."""
        while True:
            delay = math.inf
            if self._due_at is not None:
                delay = max((self._due_at - self._now()).total_seconds(), 0)
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._due.wait()
                self._due = anyio.Event()
                continue
            self._due = anyio.Event()
            self._due_at = None
            async with self._turn:
                await self._read_due()

    async def _read_due(self) -> None:
        self._finished, now = set(), self._now()
        try:
            self.store_reads += 1
            due = await anyio.to_thread.run_sync(self._store.due_deliveries, now, PAGE)
            later = await anyio.to_thread.run_sync(self._store.next_delivery_at, now)
        except Exception as exc:
            _log_failure(exc)
            self._wake_due(self._now() + timedelta(seconds=RETRY_AFTER_STORE_ERROR))
            return
        finally:
            stale, self._finished = self._finished, None
        pushed = 0
        for found in due:
            d = found.delivery
            if d.id in self._owned or d.id in stale:
                continue
            try:
                event = TransitionEvent.of(found.event)
            except ValueError as exc:  # a state unknown here (a newer coordinator's)
                logger.warning("webhook %d: delivery %d dropped: %s", d.hook_id, d.id, exc)
                await self._record(d.id, "dropped", d.attempts, f"unreadable event: {exc}", None)
                continue
            if not self._push(_Item(d, found.url, found.secret, event), stored=True):
                return  # read again once the lanes have drained
            pushed += 1
        if later is not None:
            self._wake_due(later)
        if len(due) < PAGE:
            self._spilled = False  # caught up: memory queues the next ones again
        elif pushed:
            self._wake_due(now)  # more are due than one read takes
        else:
            self._spilled = True  # a page of ones in memory: read again once they are done

    async def _attempt(self, client: httpx.AsyncClient, item: _Item) -> None:
        d, event = item.delivery, item.event
        data = transition_json(event)
        body = contained(compact(data), data, f"webhook {d.hook_id}'s event {event.id}")
        if has_surrogate(item.url) or has_surrogate(item.secret):  # stored by an old version
            reason = "the webhook's URL or secret is not valid UTF-8 text: register it again"
            logger.warning("webhook %d: delivery %d dropped: %s", d.hook_id, d.id, reason)
            await self._record(d.id, "dropped", d.attempts, reason, None)
            return
        headers = {
            "Content-Type": "application/json",
            "Boruta-Event": event.kind,
            "Boruta-Delivery": str(d.id),
            "Boruta-Signature": sign(item.secret, body),
        }
        attempts = d.attempts + 1
        error, permanent = "", False
        try:
            answer = await client.post(item.url, content=body, headers=headers)
        except httpx.TimeoutException:
            error = "timed out"
        except httpx.InvalidURL as exc:  # never sendable: the receiver cannot be reached
            error, permanent = f"invalid URL: {exc}", True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if answer.is_success:
                # The error of an earlier attempt stays, to show why it needed several.
                await self._record(d.id, "delivered", attempts, d.last_error, None, self._now())
                return
            error = f"HTTP {answer.status_code}"
            # A 4xx says the receiver will not take this event; 408 and 429 say "later".
            permanent = answer.status_code < 500 and answer.status_code not in (408, 429)
        if permanent or attempts >= self.policy.max_attempts:
            reason = error if permanent else f"gave up after {attempts} attempts: {error}"
            logger.warning(
                "webhook %d (%s): delivery %d dropped: %s", d.hook_id, where(item.url), d.id, reason
            )
            await self._record(d.id, "dropped", attempts, reason, None)
            return
        delay = min(self.policy.backoff * 2 ** (attempts - 1), self.policy.max_backoff)
        retry_at = self._now() + timedelta(seconds=delay)
        if await self._record(d.id, "pending", attempts, error, retry_at):
            self._wake_due(retry_at)

    async def _record(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        error: str,
        retry_at: datetime | None,
        delivered_at: datetime | None = None,
    ) -> bool:
        """Store an outcome; whether it was stored."""
        try:
            await anyio.to_thread.run_sync(
                lambda: self._store.record_delivery(
                    delivery_id,
                    status,
                    attempts,
                    error,
                    retry_at,
                    delivered_at,
                )
            )
        except Exception:
            # Still pending in the store, so it is sent again: at least once, as promised.
            logger.warning("webhooks: delivery %d outcome not recorded", delivery_id)
            self._wake_due(self._now() + timedelta(seconds=RETRY_AFTER_STORE_ERROR))
            return False
        self._outcomes += 1
        self._recorded.set()
        self._recorded = anyio.Event()
        return True


def _log_failure(exc: Exception) -> None:
    if isinstance(exc, StoreUnavailable):
        logger.warning("webhooks: store unavailable; retrying")
    else:
        logger.error("webhooks: unexpected failure; retrying", exc_info=exc)
