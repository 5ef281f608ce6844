"""``PeerClient``: one coordinator's HTTP calls to another on the peer routes, with the
farm's secret (docs/failover.md §scale-out)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import anyio
import httpx

from coordinator.errors import StoreUnavailable
from coordinator.link.peerwire import PEER_HEADER

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 2.0  # seconds: the coordinators share the farm's LAN
MARGIN: Final = 5.0  # seconds a peer call waits beyond the dryad's own time for the call


class PeerUnreachable(ConnectionError):
    """The other coordinator could not be reached, or its answer was lost."""


class PeerClient:
    """Posts JSON to other coordinators; ``secret`` may be set once it is known, or read
    by ``read_secret`` (blocking: the store's, after the migration made it) when first
    needed."""

    def __init__(
        self,
        secret: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        read_secret: Callable[[], str] | None = None,
    ):
        self.secret = secret
        self._read_secret = read_secret
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
        )

    async def send(
        self, method: str, base: str, path: str, body: Any, seconds: float
    ) -> tuple[int, Any]:
        """The status and JSON body (None when there is none) of ``method base+path``.

        :raises PeerUnreachable: when ``base`` cannot be reached, or its answer was lost
            or is not JSON.
        """
        if not self.secret and self._read_secret is not None:
            try:
                self.secret = await anyio.to_thread.run_sync(self._read_secret)
            except StoreUnavailable as exc:
                raise PeerUnreachable(f"the farm's peer secret: {exc.message}") from exc
        if not self.secret:
            raise PeerUnreachable("the farm's peer secret is not known yet")
        url = base.rstrip("/") + path
        try:
            answer = await self._http.request(
                method,
                url,
                json=body,
                headers={PEER_HEADER: self.secret},
                timeout=httpx.Timeout(seconds + MARGIN, connect=CONNECT_TIMEOUT),
            )
        except httpx.HTTPError as exc:
            raise PeerUnreachable(f"{base} cannot be reached: {exc or type(exc).__name__}") from exc
        if answer.status_code == 204 or not answer.content:
            return answer.status_code, None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            raise PeerUnreachable(f"{base} answered {answer.status_code} without JSON") from None

    async def aclose(self) -> None:
        await self._http.aclose()
