"""The original's routing fallbacks (docs/boruta-api.md §routing): 308s, else 404."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from coordinator.api.errors import route_not_found


def fallback(routes: Iterable[BaseRoute]) -> ASGIApp:
    """The ASGI app for a path no route takes: a redirect the original gives, or 404."""
    known = list(routes)

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        response = redirect_or_404(known, Request(scope))
        await response(scope, receive, send)

    return default


def redirect_or_404(routes: list[BaseRoute], request: Request) -> Response:
    """308 to the clean path, to ``/api/v1/``, or across a trailing slash; else 404."""
    path = request.url.path
    query = f"?{request.url.query}" if request.url.query else ""
    if not is_clean(path):
        # The unchanged Go client sends ``//api/v1/…`` when its base URL ends in "/", and
        # always ``/api/v1//version``: it follows this redirect (docs/boruta-api.md §routing).
        cleaned = clean_path(path)
        if _unversioned(cleaned) or _matches(routes, request.scope, cleaned, _toggled(cleaned)):
            return RedirectResponse(cleaned + query, 308)
        return route_not_found(path)
    if _unversioned(path):
        return RedirectResponse("/api/v1/" + path.removeprefix("/api/") + query, 308)
    other = _toggled(path)
    if _matches(routes, request.scope, other):
        return RedirectResponse(other + query, 308)
    return route_not_found(path)


def clean_path(path: str) -> str:
    """``path`` as Go's ``path.Clean`` leaves it: one slash between segments, ``.`` and
    ``..`` resolved (never above the root), no trailing slash."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def is_clean(path: str) -> bool:
    """Whether ``path`` is already clean, a trailing slash allowed (that has its own rule)."""
    cleaned = clean_path(path)
    return path == cleaned or (cleaned != "/" and path == cleaned + "/")


def _unversioned(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith("/api/v1/")


def _toggled(path: str) -> str:
    return path[:-1] if path.endswith("/") else path + "/"


def _matches(routes: list[BaseRoute], scope: Scope, *paths: str) -> bool:
    return any(
        route.matches({**scope, "path": path})[0] is not Match.NONE
        for path in paths
        for route in routes
    )
