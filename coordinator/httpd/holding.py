"""A follower's peer routes: the leader's calls to the dryads whose links this follower
holds, performed on them (docs/failover.md §scale-out, "step 2").

Only ``POST /peer/v1/dryads/{uuid}/{method}`` and ``PUT``/``DELETE
/peer/v1/tunnels/{rid}`` (a job's tunnel on this follower) with the farm's secret are
served; any
other ``/peer/`` path, and any request without the right secret, is refused here and
never forwarded (a follower adds the secret to what it forwards, so passing a client's
``/peer/`` request on would lend the client the follower's trust).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from coordinator import wire
from coordinator.api.errors import error_response
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import (
    BodyTooLarge,
    BorutaError,
    Forbidden,
    InvalidRequest,
    RouteNotFound,
    TunnelUnavailable,
)
from coordinator.link import peerwire
from coordinator.link.server import worker_uuid
from coordinator.service.interfaces import Tunnels
from coordinator.wire import Method, RpcError, WireError, strict_json

logger = logging.getLogger("coordinator")

MAX_BODY = 64 << 10  # bytes: the largest params (a panel's PNG) are 16 KiB and some


class Asker(Protocol):
    """What performs a call on a dryad's link (``link.registry.DryadLink``)."""

    async def ask(self, worker: WorkerUUID, method: Method[Any, Any], params: Any) -> Any: ...


class DryadCalls:
    """The ASGI app of ``/peer/`` paths on a follower; ``secret`` gives the farm's secret
    as far as it is known ("" before)."""

    def __init__(
        self, link: Asker | None, secret: Callable[[], str], tunnels: Tunnels | None = None
    ) -> None:
        self._link = link
        self._secret = secret
        self._tunnels = tunnels

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
        if path.startswith(peerwire.TUNNELS):
            return await self._tunnel(scope, receive, path.removeprefix(peerwire.TUNNELS))
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

    async def _tunnel(self, scope: Scope, receive: Receive, rid_text: str) -> Any:
        """Open (PUT) or close (DELETE) a job's tunnel here; the answer is where users
        dial it."""
        if not (rid_text.isascii() and rid_text.isdigit() and 0 < len(rid_text) < 19):
            raise InvalidRequest(f"{rid_text[:32]!r} is not a request ID")
        rid = RequestID(int(rid_text))
        if self._tunnels is None:
            raise TunnelUnavailable("this coordinator serves no tunnels")
        if scope["method"] == "DELETE":
            await self._tunnels.close(rid)
            return {"result": None}
        if scope["method"] != "PUT":
            raise RouteNotFound(f"peer route {scope['method']} {scope['path']}")
        try:
            uuid, address = peerwire.read_tunnel_order(strict_json.loads(await _body(receive)))
        except (ValueError, peerwire.PeerWireError) as exc:
            raise InvalidRequest(f"tunnel order: {exc}") from None
        if worker_uuid(uuid) is None:
            raise InvalidRequest(f"{uuid[:64]!r} is not a worker UUID")
        now = datetime.now(UTC)
        # What a tunnel needs of the worker: who it is, and its sshd for "direct".
        worker = Worker(uuid, WorkerState.RUN, {"UUID": uuid}, (), now, now, address)
        try:
            host, port = await self._tunnels.open(rid, worker)
        except OSError as exc:  # TunnelUnavailable is one; a failed listen another
            if isinstance(exc, BorutaError):
                raise
            raise TunnelUnavailable(f"tunnel not opened: {exc}") from exc
        return {"host": host, "port": port}

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
