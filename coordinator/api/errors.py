"""The one place errors become answers in the original's format (docs/boruta-api.md §errors)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from coordinator.boruta_json import dumps
from coordinator.errors import BorutaError, Unauthorized

logger = logging.getLogger(__name__)


def error_response(exc: BorutaError) -> Response:
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="boruta", Basic realm="boruta"'
    if exc.status == 503:
        headers["Retry-After"] = "5"
    return Response(
        dumps({"message": exc.wire_message}),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


async def boruta_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BorutaError):  # pragma: no cover - registered for BorutaError only
        raise exc
    if exc.status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


async def internal_error(request: Request, exc: Exception) -> Response:
    """As the original's panic handler, but the reason stays in the log, not the answer."""
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return PlainTextResponse("Internal Server Error:\nsee the coordinator's log", 500)
