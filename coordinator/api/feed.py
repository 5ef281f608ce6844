"""The feed over HTTP: webhooks (admin), the audit history and ``/metrics``."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

import anyio
import httpx
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator import boruta_json as bj
from coordinator.api import bodies, params
from coordinator.api.auth import Authenticator
from coordinator.api.v1 import json_response, no_content
from coordinator.domain.clock import Clock
from coordinator.domain.model import User
from coordinator.domain.states import RequestState
from coordinator.errors import Forbidden, MalformedInput, NotFound
from coordinator.feed.events import TransitionEvent
from coordinator.feed.metrics import Metrics
from coordinator.feed.render import state_text, transition_json
from coordinator.feed.webhooks import Webhooks, where
from coordinator.store import Store
from coordinator.store.records import EVENT_KINDS, Delivery, JobEdge, TransitionQuery, Webhook
from coordinator.wire.limits import MAX_URL

logger = logging.getLogger(__name__)

MAX_HISTORY: Final = 10_000  # rows one history call may return
MAX_EVENT_ID: Final = 2**63 - 1  # ids are signed 64-bit in both databases
MAX_SECRET: Final = 256  # characters of a webhook's signing key
_MAX_BODY: Final = 64 * 1024


class FeedEndpoints:
    """Webhook management, history and metrics, bound to the store and the app's parts."""

    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        clock: Clock,
        webhooks: Webhooks,
        metrics: Metrics,
        metrics_public: bool,
    ) -> None:
        self._store = store
        self._auth = auth
        self._clock = clock
        self._webhooks = webhooks
        self._metrics = metrics
        self._metrics_public = metrics_public

    def routes(self) -> list[Route]:
        p = "/api/v1"
        return [
            Route(f"{p}/webhooks", self.add_webhook, methods=["POST"]),
            Route(f"{p}/webhooks", self.list_webhooks, methods=["GET"]),
            Route(f"{p}/webhooks/{{hook}}", self.delete_webhook, methods=["DELETE"]),
            Route(f"{p}/webhooks/{{hook}}/deliveries", self.deliveries, methods=["GET"]),
            Route(f"{p}/history", self.history, methods=["GET"]),
            Route(f"{p}/history/jobs", self.jobs, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def _admin(self, http: HttpRequest) -> User:
        user = await self._auth.user(http)
        if not user.admin:
            raise Forbidden("only an admin may do this")
        return user

    # ---- webhooks ------------------------------------------------------------------------

    async def add_webhook(self, http: HttpRequest) -> Response:
        """``{"URL", "Kinds", "Secret"?}`` → 201 ``{"ID"}``, plus ``"Secret"`` if made here."""
        user = await self._admin(http)
        body = bj.expect_object(await bodies.read_json(http, _MAX_BODY), "webhook")
        url = _url(body.get("URL"))
        kinds = bj.texts_in(body.get("Kinds"), "Kinds") or list(EVENT_KINDS)
        if not set(kinds) <= set(EVENT_KINDS):
            raise MalformedInput(f"Kinds must be among {', '.join(EVENT_KINDS)}")
        secret = body.get("Secret")
        generated = secret is None or secret == ""
        if generated:
            secret = secrets.token_urlsafe(32)
        if not isinstance(secret, str) or len(secret) < 16:
            raise MalformedInput("Secret must be a string of at least 16 characters")
        bj.text_in(secret, "Secret", MAX_SECRET)
        hook = await anyio.to_thread.run_sync(
            self._store.add_webhook, url, sorted(set(kinds)), secret, user.name, self._clock.now()
        )
        logger.info("webhook %d to %s added by %s", hook.id, where(url), user.name)
        self._webhooks.wake()
        answer: dict[str, object] = {"ID": hook.id}
        if generated:
            answer["Secret"] = secret  # shown once; the receiver needs it to check signatures
        return json_response(answer, 201)

    async def list_webhooks(self, http: HttpRequest) -> Response:
        """Active webhooks; ``?all=true`` adds deleted ones with who deleted them and when."""
        await self._admin(http)
        deleted = http.query_params.get("all", "").lower() in ("1", "true", "yes")
        hooks = await anyio.to_thread.run_sync(lambda: self._store.webhooks(deleted=deleted))
        return json_response([_hook_json(h) for h in hooks])

    async def delete_webhook(self, http: HttpRequest) -> Response:
        user = await self._admin(http)
        hook_id = _id(http.path_params["hook"], "Webhook")
        await anyio.to_thread.run_sync(
            self._store.delete_webhook, hook_id, user.name, self._clock.now()
        )
        logger.info("webhook %d deleted by %s", hook_id, user.name)
        return no_content()

    async def deliveries(self, http: HttpRequest) -> Response:
        await self._admin(http)
        hook_id = _id(http.path_params["hook"], "Webhook")
        limit = params.whole(http.query_params.get("limit"), "limit", 100, MAX_HISTORY)
        found = await anyio.to_thread.run_sync(self._store.deliveries, hook_id, limit)
        return json_response([_delivery_json(d) for d in found])

    # ---- history -------------------------------------------------------------------------

    async def history(self, http: HttpRequest) -> Response:
        """Transitions with actor and reason, newest last: after ``after`` if given, else the
        latest ``limit``; each as an event's data."""
        await self._auth.user(http)
        q = http.query_params
        query = TransitionQuery(
            kinds=frozenset(q.getlist("kind")), subjects=frozenset(q.getlist("subject"))
        )
        after = q.get("after")
        limit = params.whole(q.get("limit"), "limit", 1000, MAX_HISTORY)
        start = params.whole(after, "after", 0, MAX_EVENT_ID)
        found = await anyio.to_thread.run_sync(
            lambda: self._store.transitions_after(start, limit, query, latest=after is None)
        )
        return json_response([transition_json(TransitionEvent.of(stored)) for stored in found])

    async def jobs(self, http: HttpRequest) -> Response:
        """Who held which board, when and for how long: one row per job, newest last."""
        await self._auth.user(http)
        worker = http.query_params.get("worker") or None
        limit = params.whole(http.query_params.get("limit"), "limit", 100, MAX_HISTORY)
        edges = await anyio.to_thread.run_sync(self._store.job_edges, worker, 2 * limit + 1)
        return json_response(held(edges, self._clock.now())[-limit:])

    # ---- metrics -------------------------------------------------------------------------

    async def metrics(self, http: HttpRequest) -> Response:
        """Prometheus exposition; it needs a token unless ``metrics_public`` is set, since
        it shows who the farm serves and how (secure by default)."""
        if not self._metrics_public:
            await self._auth.user(http)
        return Response(
            self._metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )


def held(edges: Sequence[JobEdge], now: datetime) -> list[dict[str, object]]:
    """Pair each request's start of IN PROGRESS with its end; a job still running has no
    end, and its duration so far."""
    open_: dict[str, tuple[datetime, dict[str, object]]] = {}
    rows: list[dict[str, object]] = []
    for edge in edges:
        t = TransitionEvent.of(edge.event)
        if t.new is RequestState.IN_PROGRESS:
            row: dict[str, object] = {
                "request": int(t.subject),
                "owner": edge.owner,
                "worker": edge.worker,
                "start": bj.format_time(t.at),
                "end": None,
                "duration": max((now - t.at).total_seconds(), 0.0),
                "ended": None,
                "reason": "",
            }
            open_[t.subject] = (t.at, row)
            rows.append(row)
        elif t.old is RequestState.IN_PROGRESS and (started := open_.pop(t.subject, None)):
            start, row = started
            row.update(
                end=bj.format_time(t.at),
                duration=(t.at - start).total_seconds(),
                ended=state_text(t.new),
                reason=t.reason,
            )
    return rows


def _hook_json(hook: Webhook) -> dict[str, object]:
    data: dict[str, object] = {
        "ID": hook.id,
        "URL": hook.url,
        "Kinds": list(hook.kinds),
        "CreatedBy": hook.created_by,
        "CreatedAt": bj.format_time(hook.created_at),
    }
    if hook.deleted_at is not None:
        data["DeletedBy"] = hook.deleted_by
        data["DeletedAt"] = bj.format_time(hook.deleted_at)
    return data


def _delivery_json(d: Delivery) -> dict[str, object]:
    return {
        "ID": d.id,
        "Event": d.event_id,
        "Status": d.status,
        "Attempts": d.attempts,
        "LastError": d.last_error,
        "NextAttemptAt": bj.format_time(d.next_attempt_at) if d.next_attempt_at else None,
        "DeliveredAt": bj.format_time(d.delivered_at) if d.delivered_at else None,
    }


def _id(text: str, what: str) -> int:
    if not params.is_whole(text) or int(text) > MAX_EVENT_ID:
        raise NotFound(what)
    return int(text)


def _url(url: object) -> str:
    """A webhook's URL: http or https with a host, valid text within ``MAX_URL``."""
    if not isinstance(url, str):
        raise MalformedInput("URL must be an http:// or https:// URL")
    bj.text_in(url, "URL", MAX_URL)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - it raises for a port out of range
    except ValueError as exc:
        raise MalformedInput(f"URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedInput("URL must be an http:// or https:// URL")
    try:
        httpx.URL(url)  # what the deliveries will send to
    except httpx.InvalidURL as exc:
        raise MalformedInput(f"URL: {exc}") from None
    return url
