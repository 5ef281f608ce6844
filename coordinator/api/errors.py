"""The one place where errors become HTTP answers in the original's format
(docs/boruta-api.md §errors).

The body is the original's ``{"message": …}``, byte for byte; the class's machine code goes
in the ``Boruta-Error-Code`` header, which old clients ignore (codes: ``coordinator.errors``).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from coordinator.boruta_json import dumps
from coordinator.errors import (
    BY_STATUS,
    ERROR_CODE_HEADER,
    BorutaError,
    InternalError,
    RouteNotFound,
    Unauthorized,
)

logger = logging.getLogger(__name__)


def error_response(exc: BorutaError) -> Response:
    """The answer for ``exc``; an error with no code of its own is answered as internal."""
    if not exc.code or exc.client_side:
        exc = InternalError()
    headers = {ERROR_CODE_HEADER: exc.code}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="boruta", Basic realm="boruta"'
    if exc.status == 503:
        headers["Retry-After"] = "5"
    if isinstance(exc, InternalError):  # the original's panic answer is plain text
        return PlainTextResponse(exc.wire_message, exc.status, headers)
    return Response(
        dumps({"message": exc.wire_message}),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


async def boruta_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BorutaError):  # pragma: no cover - registered for BorutaError only
        raise exc
    if not exc.code or exc.client_side:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    elif exc.status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors of Starlette's routing: 405 (with ``Allow``) and any other status it raises,
    as the tree's class for that status."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for it only
        raise exc
    kind = BY_STATUS.get(exc.status_code, InternalError)
    error: BorutaError
    if exc.status_code == 404:
        error = RouteNotFound(request.url.path)
    elif kind is InternalError:
        logger.error("%s %s: HTTP %d %s", request.method, request.url.path, exc.status_code, exc)
        error = InternalError()
    else:
        error = kind.from_message(str(exc.detail))
    response = error_response(error)
    response.headers.update(exc.headers or {})  # 405 must say Allow
    return response


def route_not_found(path: str) -> Response:
    """The router's fallback: ``{"message": "<path> not found"}``."""
    return error_response(RouteNotFound(path))


async def internal_error(request: Request, exc: Exception) -> Response:
    """As the original's panic handler, but the reason stays in the log, not the answer."""
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(InternalError())
