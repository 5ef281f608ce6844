"""``PeerClient``: one coordinator's HTTP calls to another on the peer routes, with the
farm's secret (docs/failover.md §scale-out)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import anyio
import httpx

from coordinator.errors import StoreUnavailable
from coordinator.link import peerfigures
from coordinator.link.peerfigures import PeerFigures
from coordinator.link.peerwire import PEER_HEADER

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 2.0  # seconds: the coordinators share the farm's LAN
MARGIN: Final = 5.0  # seconds a peer call waits beyond the dryad's own time for the call


class PeerUnreachable(ConnectionError):
    """The other coordinator could not be reached, or its answer was lost."""


class PeerDown(PeerUnreachable):
    """No connection to the other coordinator could be made (refused, no route, a name
    that does not resolve): it is not running there, so the call was not performed."""


class PeerTimedOut(PeerUnreachable):
    """The other coordinator did not answer in time: it may be loaded, not gone."""


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
        self.figures = PeerFigures()  # this process's peer calls, for /metrics
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

        :raises PeerDown: when no connection to ``base`` could be made.
        :raises PeerTimedOut: when ``base`` did not answer in time.
        :raises PeerUnreachable: when its answer was lost or is not JSON (or the secret is
            not known).
        """
        if not self.secret and self._read_secret is not None:
            try:
                self.secret = await anyio.to_thread.run_sync(self._read_secret)
            except StoreUnavailable as exc:
                raise PeerUnreachable(f"the farm's peer secret: {exc.message}") from exc
        if not self.secret:
            raise PeerUnreachable("the farm's peer secret is not known yet")
        url = base.rstrip("/") + path
        start = time.monotonic()
        result: str | None = None  # None: cancelled, not counted
        try:
            answer = await self._http.request(
                method,
                url,
                json=body,
                headers={PEER_HEADER: self.secret},
                timeout=httpx.Timeout(seconds + MARGIN, connect=CONNECT_TIMEOUT),
            )
            result = peerfigures.OK if answer.is_success else peerfigures.REFUSED
            if answer.status_code == 204 or not answer.content:
                return answer.status_code, None
            try:
                return answer.status_code, answer.json()
            except ValueError:
                result = peerfigures.LOST
                raise PeerUnreachable(
                    f"{base} answered {answer.status_code} without JSON"
                ) from None
        except httpx.HTTPError as exc:
            result, error = _failure(exc)
            why = str(exc) or type(exc).__name__
            raise error(f"{base} cannot be reached: {why}") from exc
        finally:
            if result is not None:
                self.figures.observe(path, result, time.monotonic() - start)

    async def aclose(self) -> None:
        await self._http.aclose()


def _failure(exc: httpx.HTTPError) -> tuple[str, type[PeerUnreachable]]:
    """The figures' result and the exception of a failed call."""
    if isinstance(exc, httpx.TimeoutException):  # a connect timeout too: maybe loaded
        return peerfigures.TIMEOUT, PeerTimedOut
    if isinstance(exc, httpx.ConnectError):  # refused, no route, unknown name
        return peerfigures.UNREACHABLE, PeerDown
    return peerfigures.LOST, PeerUnreachable
