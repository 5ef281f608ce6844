"""A follower's API: each request forwarded to the leader, its answer streamed back as it
comes (docs/failover.md §scale-out).

The request goes with its method, path, query, headers and body, plus the farm's peer
secret and the client's address (``Boruta-Peer``, ``Boruta-Peer-Client``); the answer's
status and headers come back as they are, and its body chunk by chunk, so an event
stream or a long ``acquire_worker?wait=`` flows as it would from the leader. A client
that goes away closes the upstream request; an upstream answer that breaks off is cut
here too, never ended as if whole. Connections to the leader are kept alive in a
bounded pool (``upstream``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import anyio
from starlette.types import Message, Receive, Scope, Send

from coordinator.api.errors import error_response
from coordinator.errors import (
    BodyTooLarge,
    BorutaError,
    InvalidRequest,
    LeaderAnswerLost,
    LeaderUnreachable,
)
from coordinator.httpd.peergate import PEER, PEER_CLIENT
from coordinator.httpd.upstream import (
    Answer,
    Cut,
    Lost,
    Malformed,
    Unreachable,
    Upstream,
    UpstreamError,
)

logger = logging.getLogger("coordinator")

# Headers of one connection, not of the message: never passed on, either way.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers this end writes itself: the body's length, and nothing to continue.
_OWN: Final = frozenset({b"content-length", b"expect"})
PROBE_TIMEOUT: Final = 2.0
CHANGING: Final = "the farm is changing leader"


@dataclass(frozen=True)
class Leader:
    """Where the leader's API is, and the farm's peer secret (never shown)."""

    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Pool:
    """The connections to the leader: at most ``size``, idle ones kept ``keepalive`` s."""

    size: int
    keepalive: float


class Forwarder:
    """The forwarding ASGI app; ``leader`` says where to, at each request."""

    def __init__(self, leader: Callable[[], Leader | None], max_body: int, pool: Pool) -> None:
        self._leader = leader
        self._max_body = max_body
        self._pool = pool
        self._upstream: tuple[str, Upstream] | None = None  # the leader's URL, its pool
        self._streams: set[asyncio.Timeout] = set()
        self._stopped = False
        # What /metrics shows of this process: answers by status class, and failures.
        self.answered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        self.in_flight += 1
        try:
            await self._forward(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def probe(self, leader: Leader) -> str | None:
        """Why the leader's ``/healthz`` does not say ready, or None when it does."""
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                answer = await self._to(leader).request(b"GET", b"/healthz", [], b"")
                try:
                    async for _ in answer.body():
                        pass
                finally:
                    answer.close()
        except TimeoutError:
            return f"the leader at {leader.url} does not answer within {PROBE_TIMEOUT:g} s"
        except UpstreamError as exc:
            return f"the leader at {leader.url} does not answer: {_why(exc)}"
        if answer.status != 200:
            return f"the leader at {leader.url} is not ready (HTTP {answer.status})"
        return None

    async def stop(self) -> None:
        """Cut every answer being streamed and close the connections to the leader: this
        coordinator leads now, or stops."""
        self._stopped = True
        now = asyncio.get_running_loop().time()
        for stream in list(self._streams):
            stream.reschedule(now)
        if self._upstream is not None:
            self._upstream[1].close()

    def _to(self, leader: Leader) -> Upstream:
        """The pool of connections to ``leader``; a new leader's replaces the last one's.

        :raises Unreachable: for a URL that is not ``http://HOST:PORT``.
        """
        if self._upstream is not None and self._upstream[0] == leader.url:
            return self._upstream[1]
        try:
            parts = urlsplit(leader.url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if parts.scheme != "http" or not host or not port:
            raise Unreachable(f"the leader's address {leader.url!r} is not http://HOST:PORT")
        if self._upstream is not None:
            self._upstream[1].close()
        upstream = Upstream(host, port, self._pool.size, self._pool.keepalive)
        self._upstream = (leader.url, upstream)
        return upstream

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        leader = self._leader()
        if leader is None or self._stopped:
            await _answer(LeaderUnreachable(CHANGING), scope, receive, send)
            return
        try:
            body = await self._body(receive)
        except _ClientGone:
            return
        except BorutaError as exc:
            self.failed[exc.code] += 1
            await _answer(exc, scope, receive, send)
            return
        exchange = _Exchange()
        # asyncio's own timeouts, not anyio's scopes and task groups, end a forwarded
        # request early (the coordinator stops following, the client leaves): anyio's cost
        # a quarter of a follower's CPU per request (docs/failover.md §scale-out).
        try:
            async with asyncio.timeout(None) as stopping:
                self._streams.add(stopping)
                try:
                    outcome = await self._exchange(leader, scope, body, exchange, receive, send)
                finally:
                    self._streams.discard(stopping)
        except TimeoutError:
            outcome = "stopped"
            if not exchange.started:
                await _answer(LeaderUnreachable(CHANGING), scope, receive, send)
                return
        if outcome in ("cut", "stopped"):
            self.failed[outcome] += 1
            # Returning without the answer's end makes uvicorn close the connection, so the
            # client sees a broken answer, never a short one that looks whole.
            logger.warning(
                "forwarding %s %s: the leader's answer was %s mid-way; cut",
                scope["method"],
                scope["path"],
                "broken" if outcome == "cut" else "stopped (this coordinator changes role)",
            )

    async def _exchange(
        self,
        leader: Leader,
        scope: Scope,
        body: bytes,
        exchange: _Exchange,
        receive: Receive,
        send: Send,
    ) -> str:
        """Send the request and stream the answer back; how it ended: "done", "gone" (the
        client left), "cut" (the answer broke off), or "answered" (our own error).

        The client's going away is watched from the start: ``acquire_worker?wait=`` has no
        head for minutes, and its upstream request must close with the client's."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as leaving:

                async def watch() -> None:
                    message: Message = await receive()
                    while message["type"] != "http.disconnect":
                        message = await receive()
                    leaving.reschedule(loop.time())  # closes the upstream request and answer

                watcher = loop.create_task(watch())
                try:
                    return await self._ask(leader, scope, body, exchange, receive, send)
                finally:
                    watcher.cancel()
        except TimeoutError:
            return "gone"

    async def _ask(
        self,
        leader: Leader,
        scope: Scope,
        body: bytes,
        exchange: _Exchange,
        receive: Receive,
        send: Send,
    ) -> str:
        try:
            upstream = self._to(leader)
            answer = await upstream.request(
                scope["method"].encode("ascii", "replace"),
                _target(scope),
                _headers(scope, leader),
                body,
            )
        except Malformed as exc:
            self.failed["malformed"] += 1
            error = InvalidRequest(f"this request cannot be forwarded: {_why(exc)}")
            await _answer(error, scope, receive, send)
            return "answered"
        except Unreachable as exc:
            self.failed[LeaderUnreachable.code] += 1
            message = f"{CHANGING}: {leader.url}: {_why(exc)}"
            await _answer(LeaderUnreachable(message), scope, receive, send)
            return "answered"
        except Lost as exc:
            self.failed[LeaderAnswerLost.code] += 1
            logger.warning("forwarding %s %s: %s", scope["method"], scope["path"], _why(exc))
            message = "the leader's answer was lost; the request may have been applied"
            await _answer(LeaderAnswerLost(message), scope, receive, send)
            return "answered"
        exchange.started = True
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": _passed(answer.headers),
                }
            )
            self.answered[f"{answer.status // 100}xx"] += 1
            outcome = await _relay(answer, send)
        finally:
            answer.close()
        if outcome == "done":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return outcome

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge(f"request body over {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


@dataclass
class _Exchange:
    started: bool = False  # the answer's head went to the client


class _ClientGone(Exception):
    """The client closed its connection before its request's body was read."""


async def _relay(answer: Answer, send: Send) -> str:
    """Copy the answer's body as it comes until it ends ("done") or breaks ("cut")."""
    try:
        async for chunk in answer.body():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Cut:
        return "cut"
    return "done"


def _target(scope: Scope) -> bytes:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    return raw + b"?" + query if query else raw


def _headers(scope: Scope, leader: Leader) -> list[tuple[bytes, bytes]]:
    """The client's headers but the hop-by-hop ones and any peer header it sent, and the
    peer's own: the secret and the client's address."""
    named = _connection_named(scope["headers"])
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name not in HOP_BY_HOP
        and name not in _OWN
        and name not in named
        and not name.startswith(PEER)
    ]
    client = scope.get("client") or ("", 0)
    headers.append((PEER, leader.secret.encode("ascii")))
    headers.append((PEER_CLIENT, str(client[0]).encode("ascii", "replace")))
    return headers


def _passed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers but the hop-by-hop ones."""
    named = _connection_named(headers)
    return [
        (name.lower(), value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]


def _connection_named(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Headers a ``Connection`` header names: hop-by-hop as well (RFC 9110, section 7.6.1)."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    )


async def _answer(error: BorutaError, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(error)
    if isinstance(error, LeaderUnreachable):
        response.headers["Retry-After"] = "1"  # a takeover takes about a second
    await response(scope, receive, send)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
