"""A follower's peer routes: the leader's calls to the dryads whose links this follower
holds, performed on them (docs/failover.md §scale-out, "step 2").

Only ``POST /peer/v1/dryads/{uuid}/{method}`` with the farm's secret is served; any
other ``/peer/`` path, and any request without the right secret, is refused here and
never forwarded (a follower adds the secret to what it forwards, so passing a client's
``/peer/`` request on would lend the client the follower's trust).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from coordinator import wire
from coordinator.api.errors import error_response
from coordinator.domain.ids import WorkerUUID
from coordinator.errors import BodyTooLarge, BorutaError, Forbidden, InvalidRequest, RouteNotFound
from coordinator.link import peerwire
from coordinator.link.server import worker_uuid
from coordinator.wire import Method, RpcError, WireError, strict_json

logger = logging.getLogger("coordinator")

MAX_BODY = 64 << 10  # bytes: the largest params (a panel's PNG) are 16 KiB and some


class Asker(Protocol):
    """What performs a call on a dryad's link (``link.registry.DryadLink``)."""

    async def ask(self, worker: WorkerUUID, method: Method[Any, Any], params: Any) -> Any: ...


class DryadCalls:
    """The ASGI app of ``/peer/`` paths on a follower; ``secret`` gives the farm's secret
    as far as it is known ("" before)."""

    def __init__(self, link: Asker | None, secret: Callable[[], str]) -> None:
        self._link = link
        self._secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self._serve(scope, receive)
        except BorutaError as exc:
            await error_response(exc)(scope, receive, send)
            return
        body = json.dumps(answer, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, scope: Scope, receive: Receive) -> Any:
        if not self._admitted(scope):
            client = (scope.get("client") or ("?", 0))[0]
            logger.warning(
                "refused %s %s from %s: peer routes take the farm's secret",
                scope["method"], scope["path"], client,
            )  # fmt: skip
            raise Forbidden("peer routes are for the farm's coordinators")
        path: str = scope["path"]
        uuid_text, _, name = path.removeprefix(peerwire.DRYADS).partition("/")
        row = peerwire.TO_DRYAD.get(name)
        uuid = worker_uuid(uuid_text)
        if scope["method"] != "POST" or not path.startswith(peerwire.DRYADS) or row is None:
            raise RouteNotFound(f"peer route {scope['method']} {path}")
        if uuid is None:
            raise InvalidRequest(f"{uuid_text!r} is not a worker UUID")
        try:
            params = row.params.from_wire(strict_json.loads(await _body(receive)))
        except (ValueError, WireError) as exc:  # JSONDecodeError is a ValueError
            raise InvalidRequest(f"{row} params: {exc}") from None
        if self._link is None:
            return peerwire.failure(ConnectionError("no dryad link runs on this coordinator"))
        try:
            result = await self._link.ask(uuid, row, params)
        except (ConnectionError, TimeoutError, RpcError, WireError) as exc:
            return peerwire.failure(exc)
        return {"result": wire.encode(result)}

    def _admitted(self, scope: Scope) -> bool:
        secret = self._secret().encode("ascii")
        given = [v for n, v in scope["headers"] if n == peerwire.PEER_HEADER.lower().encode()]
        return bool(secret) and len(given) == 1 and hmac.compare_digest(given[0], secret)


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("the request ended before its body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"a peer call's body is limited to {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
