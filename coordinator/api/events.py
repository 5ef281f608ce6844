"""``GET /api/v1/events``: the broadcaster's events as Server-Sent Events, filtered, resumable."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Final

import anyio
import anyio.lowlevel
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from coordinator.api.auth import Authenticator
from coordinator.api.params import is_whole
from coordinator.boruta_json import contained
from coordinator.domain.model import User
from coordinator.errors import MalformedInput, StoreUnavailable
from coordinator.feed.events import Broadcaster, FeedEvent, Subscription, TransitionEvent
from coordinator.feed.render import compact, event_json, event_name
from coordinator.store.records import TransitionQuery

logger = logging.getLogger(__name__)

_WORD: Final = re.compile(r"^[A-Za-z0-9_.:-]+$")
KEEPALIVE_FRAME: Final = b": keepalive\n\n"


def frame(event: FeedEvent) -> bytes:
    """The event in ``text/event-stream`` form; only stored events have an id."""
    head = f"id: {event.id}\n" if isinstance(event, TransitionEvent) else ""
    data = event_json(event)
    body = contained(compact(data), data, "an event")  # one bad row ends no one's stream
    return f"{head}event: {event_name(event)}\ndata: ".encode() + body + b"\n\n"


class EventsEndpoint:
    """The SSE endpoint; it takes ``?token=`` too, since a browser's EventSource cannot set
    headers."""

    def __init__(self, broadcaster: Broadcaster, auth: Authenticator) -> None:
        self._broadcaster = broadcaster
        self._auth = auth

    def routes(self) -> list[Route]:
        return [Route("/api/v1/events", self.events, methods=["GET"])]

    async def events(self, http: Request) -> Response:
        await authenticate(self._auth, http, allow_query_token=True)
        query = parse_query(http)
        after = _after(http)
        # Subscribed before the answer, so a client that acts once it has the headers
        # misses nothing.
        sub = self._broadcaster.subscribe(query, after)
        return _EventStream(
            self._frames(sub),
            partial(self._broadcaster.unsubscribe, sub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _frames(self, sub: Subscription) -> AsyncIterator[bytes]:
        try:
            async for event in self._broadcaster.stream(sub):
                yield KEEPALIVE_FRAME if event is None else frame(event)
                # A replay writes frames without waiting for anything: let the loop run
                # between them, so a client that hung up is noticed after one failed
                # write, not after a page of them (each logged by asyncio).
                await anyio.lowlevel.checkpoint()
        except StoreUnavailable:
            # The client reconnects with Last-Event-ID and resumes where this stream ended.
            logger.warning("events: store unavailable during a replay; stream ended")


class _EventStream(StreamingResponse):
    """Unsubscribes however the response ends, even before its first event."""

    def __init__(self, frames: AsyncIterator[bytes], done: Callable[[], None], **kw: Any) -> None:
        super().__init__(frames, **kw)
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._done()


async def authenticate(auth: Authenticator, http: HTTPConnection, allow_query_token: bool) -> User:
    """The caller, from the Authorization header or, where allowed, ``?token=``."""
    token = http.query_params.get("token") if allow_query_token else None
    if token and "authorization" not in http.headers:
        scope = dict(http.scope)
        scope["headers"] = [(b"authorization", b"Bearer " + token.encode())]
        return await auth.user(HTTPConnection(scope))
    return await auth.user(http)


def parse_query(http: HTTPConnection) -> TransitionQuery:
    """``kinds=request,worker``, ``subject=…`` (repeatable), ``states=…`` (comma-separated;
    an event matches when its old or new state is listed)."""
    return TransitionQuery(
        kinds=frozenset(_values(http, "kinds")),
        subjects=frozenset(_values(http, "subject")),
        states=frozenset(s.upper() for s in _values(http, "states", words=False)),
    )


def _values(http: HTTPConnection, name: str, words: bool = True) -> list[str]:
    found = [
        part.strip()
        for value in http.query_params.getlist(name)
        for part in value.split(",")
        if part.strip()
    ]
    for value in found:
        if words and not _WORD.match(value):
            raise MalformedInput(f"{name}: unexpected value {value!r}")
    return found


def _after(http: HTTPConnection) -> int | None:
    """Where to resume: the ``Last-Event-ID`` header (a reconnecting EventSource sends it),
    else ``?after=``."""
    text = http.headers.get("last-event-id") or http.query_params.get("after")
    if text is None or text == "":
        return None
    if not is_whole(text) or int(text) >= 2**63:
        raise MalformedInput("Last-Event-ID and after must be event ids (whole numbers)")
    return int(text)
