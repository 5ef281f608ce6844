"""Webhook deliveries: stored per event and hook, signed, sent in the background, retried."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from coordinator.store import Store
from coordinator.store.records import DeliveryStatus, DueDelivery
from coordinator.wire.limits import has_surrogate

logger = logging.getLogger(__name__)

CURSOR: Final = "webhooks"  # this reader's row in feed_cursors
PAGE: Final = 500
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


class Webhooks:
    """Turns stored transitions into stored deliveries (by a cursor, so that nothing is lost
    or repeated across a restart) and sends the due ones with an ``httpx.AsyncClient``."""

    def __init__(
        self,
        store: Store,
        policy: WebhookPolicy | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.policy = policy or WebhookPolicy()
        self._transport = transport
        self._now = now
        self._new = anyio.Event()
        self._due = anyio.Event()
        self._in_flight: set[int] = set()
        # Attempts finished while a read of the due deliveries was under way may show in it
        # as still due; each finish is numbered so that the send loop can skip those.
        self._finishes = 0
        self._finished: dict[int, int] = {}
        self._outcomes = 0  # delivery outcomes stored so far
        self._recorded = anyio.Event()  # set (and replaced) after each stored outcome
        # The newest transition handed to ``wake``, and the newest one whose deliveries
        # are stored (or that no webhook wanted).
        self._woken = 0
        self._enqueued = 0
        self._progress = anyio.Event()  # set (and replaced) when ``_enqueued`` moves
        self._limiter = anyio.CapacityLimiter(self.policy.concurrency)

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
        """New transitions are stored (a broadcaster listener), or a webhook changed."""
        if events:
            self._woken = max(self._woken, events[-1].id)
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
            self._new.set()  # events stored while we were down
            tg.start_soon(self._enqueue_loop)
            tg.start_soon(self._send_loop, client, tg)
            task_status.started()

    async def _enqueue_loop(self) -> None:
        while True:
            await self._new.wait()
            self._new = anyio.Event()
            # Stored before this read began, so this read sees them all.
            woken = self._woken
            try:
                read, added = await anyio.to_thread.run_sync(
                    self._store.enqueue_deliveries, CURSOR, self._now(), PAGE
                )
            except Exception as exc:
                # Webhooks must never take the coordinator down; the cursor has not moved.
                _log_failure(exc)
                await anyio.sleep(RETRY_AFTER_STORE_ERROR)
                self._new.set()
                continue
            if read == PAGE:
                self._new.set()
            elif woken > self._enqueued:
                self._enqueued = woken
                self._progress.set()
                self._progress = anyio.Event()
            if added:
                self._due.set()

    async def _send_loop(self, client: httpx.AsyncClient, tg: anyio.abc.TaskGroup) -> None:
        while True:
            self._due = anyio.Event()
            before = self._finishes
            try:
                due = await anyio.to_thread.run_sync(self._store.due_deliveries, self._now(), PAGE)
                nxt = await anyio.to_thread.run_sync(self._store.next_delivery_at)
            except Exception as exc:
                _log_failure(exc)
                await anyio.sleep(RETRY_AFTER_STORE_ERROR)
                continue
            stale = {i for i, n in self._finished.items() if n > before}
            self._finished = {i: self._finished[i] for i in stale}
            for item in due:
                if item.delivery.id not in self._in_flight | stale:
                    self._in_flight.add(item.delivery.id)
                    tg.start_soon(self._deliver, client, item)
            delay = math.inf if nxt is None else (nxt - self._now()).total_seconds()
            if due and len(due) == PAGE:
                delay = 0
            with anyio.move_on_after(max(delay, 0.01) if delay < math.inf else math.inf):
                await self._due.wait()

    async def _deliver(self, client: httpx.AsyncClient, item: DueDelivery) -> None:
        try:
            async with self._limiter:
                await self._attempt(client, item)
        finally:
            self._finishes += 1
            self._finished[item.delivery.id] = self._finishes
            self._in_flight.discard(item.delivery.id)
            self._due.set()

    async def _attempt(self, client: httpx.AsyncClient, item: DueDelivery) -> None:
        d = item.delivery
        try:
            event = TransitionEvent.of(item.event)
        except ValueError as exc:  # a state unknown here (a newer coordinator stored it)
            logger.warning("webhook %d: delivery %d dropped: %s", d.hook_id, d.id, exc)
            await self._record(d.id, "dropped", d.attempts, f"unreadable event: {exc}", None)
            return
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
        await self._record(d.id, "pending", attempts, error, retry_at)

    async def _record(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        error: str,
        retry_at: datetime | None,
        delivered_at: datetime | None = None,
    ) -> None:
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
            return
        self._outcomes += 1
        self._recorded.set()
        self._recorded = anyio.Event()


def _log_failure(exc: Exception) -> None:
    if isinstance(exc, StoreUnavailable):
        logger.warning("webhooks: store unavailable; retrying")
    else:
        logger.error("webhooks: unexpected failure; retrying", exc_info=exc)
