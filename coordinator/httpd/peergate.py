"""The leader's door for forwarded requests: a follower's ``Boruta-Peer`` secret is checked,
and the client address it vouches for replaces the follower's own.

Headers named ``Boruta-Peer…`` never reach the app: with the farm's secret they are taken
as the peer's word, without it they are dropped, and a request that carries a wrong
secret is refused (403) and logged without the value (docs/failover.md §scale-out).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Final

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from coordinator.api.errors import error_response
from coordinator.api.peer import PEER_SCOPE
from coordinator.errors import Forbidden, StoreUnavailable

logger = logging.getLogger("coordinator")

PEER: Final = b"boruta-peer"  # the farm's peer secret (hex)
PEER_CLIENT: Final = b"boruta-peer-client"  # the address of the follower's client


class PeerGate:
    """Wraps the leader's app; ``secret`` reads the farm's peer secret (blocking)."""

    def __init__(self, app: ASGIApp, secret: Callable[[], str]) -> None:
        self._app = app
        self._read_secret = secret
        self._secret: bytes | None = None  # read once: it never changes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_peer_header(scope["headers"]):
            try:
                admitted = await self._admit(scope)
            except StoreUnavailable as exc:  # the secret cannot be read: try again later
                await error_response(exc)(scope, receive, send)
                return
            if admitted is None:
                await error_response(Forbidden("a wrong peer secret"))(scope, receive, send)
                return
            scope = admitted
        await self._app(scope, receive, send)

    async def _admit(self, scope: Scope) -> Scope | None:
        """The scope without the peer headers, with the vouched-for client when the
        secret is right; None when a secret was given and is wrong.

        :raises StoreUnavailable: when the secret cannot be read.
        """
        given: list[bytes] = []
        client = b""
        headers = []
        for name, value in scope["headers"]:
            if name == PEER:
                given.append(value)
            elif name == PEER_CLIENT:
                client = value
            elif not name.startswith(PEER):
                headers.append((name, value))
        scope = {**scope, "headers": headers}
        if not given:
            return scope  # a client's own Boruta-Peer-Client: dropped, nobody vouched for it
        if len(given) != 1 or not await self._matches(given[0]):
            peer = scope.get("client") or ("?", 0)
            logger.warning(
                "refused %s %s from %s: a wrong peer secret (docs/failover.md §scale-out)",
                scope["method"],
                scope["path"],
                peer[0],
            )
            return None
        scope[PEER_SCOPE] = True  # the peer routes serve only such requests (api.peer)
        try:
            address = str(ipaddress.ip_address(client.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            return scope  # a follower always sends one; keep the follower's own address
        scope["client"] = (address, 0)
        return scope

    async def _matches(self, given: bytes) -> bool:
        if self._secret is None:
            secret = await anyio.to_thread.run_sync(self._read_secret)
            if not secret:
                return False  # no secret yet (a schema before revision 0011)
            self._secret = secret.encode("ascii")
        return hmac.compare_digest(given, self._secret)


def _has_peer_header(headers: list[tuple[bytes, bytes]]) -> bool:
    # On every request of the leader: a plain loop, half the time of any() over a generator.
    for name, _ in headers:
        if name[:_PREFIX] == PEER:
            return True
    return False


_PREFIX: Final = len(PEER)
