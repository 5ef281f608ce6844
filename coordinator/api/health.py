"""``/healthz`` and ``/api/v1/openapi.json``: what probes and API tools ask for."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coordinator.api.openapi import openapi_document
from coordinator.errors import StoreUnavailable
from coordinator.store import Store


class Health:
    """Liveness (the store answers a read) and the API's description."""

    def __init__(self, store: Store, max_wait: float = 600.0) -> None:
        self._store = store
        self._openapi = openapi_document(max_wait)

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/api/v1/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        ok = await self._store_reachable()
        return JSONResponse({"status": "ok" if ok else "store unavailable"}, 200 if ok else 503)

    async def _store_reachable(self) -> bool:
        """Whether the store answers a read."""
        try:
            await anyio.to_thread.run_sync(self._store.user_by_token, "")
        except StoreUnavailable:
            return False
        return True

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)
