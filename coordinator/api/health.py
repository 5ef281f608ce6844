"""``/healthz`` and ``/api/v1/openapi.json``: what probes and API tools ask for."""

from __future__ import annotations

import time
from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coordinator.api.openapi import openapi_document
from coordinator.errors import ERROR_CODE_HEADER, StoreUnavailable
from coordinator.store import Store

QUIET: Final = 10.0  # seconds after a failed write before a probe may declare it healed
PROBE_EVERY: Final = 1.0  # seconds between probe writes, however often /healthz is asked


class Health:
    """Readiness: the store answers a read, and can commit (after a failed write, a probe
    write tells when it can again); and the API's description."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._openapi = openapi_document()
        self._probed_at: float | None = None  # monotonic time of the last probe write
        self._probe_result: str | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/api/v1/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        problem = await anyio.to_thread.run_sync(self._problem)
        if problem is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {"status": "store unavailable", "reason": problem},
            503,
            headers={"Retry-After": "5", ERROR_CODE_HEADER: StoreUnavailable.code},
        )

    def _problem(self) -> str | None:
        """Why the store cannot serve, or None."""
        try:
            self._store.user_by_token("")
        except StoreUnavailable as exc:
            return f"cannot read: {exc.message}"
        failure = self._store.write_failure()
        now = time.monotonic()
        if failure is None and self._probed_at is not None:
            return None  # the latest write went through
        if failure is not None and now - failure.at < QUIET:
            # Not healed by a probe at once: a probe that rewrites one row may pass where
            # a write that grows the file fails (a full disk).
            return f"cannot commit: {failure.cause}"
        # The first time (a read-only file refuses no read), and after a failure, a probe
        # write tells whether writes work; at most once a second, whoever floods /healthz.
        if self._probed_at is None or now - self._probed_at >= PROBE_EVERY:
            self._probed_at = now
            try:
                self._store.probe_write()
            except StoreUnavailable as exc:
                self._probe_result = exc.message
            else:
                self._probe_result = None
        return None if self._probe_result is None else f"cannot commit: {self._probe_result}"

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)
