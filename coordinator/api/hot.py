"""``HotRoutes``: the requests of every job cycle go straight to their endpoints.

A job cycle is ``POST /api/v1/reqs/``, ``POST …/{id}/acquire_worker`` and ``POST
…/{id}/close``, with ``GET /api/v1/reqs/{id}`` to poll: for these, Starlette's router tries
each route's regular expression in turn and its two exception layers wrap every call and
every send, which cost more CPU than the endpoint's own parsing
(docs/architecture.md §hot routes). This middleware sits where the router's exception
layer would, takes exactly those paths (a request ID of ASCII digits, a method the route
allows) and calls the very ``Route``'s endpoint with the scope the router would have
made; an error it handles (``BorutaError``, ``HTTPException``) is answered by the same
handler. Anything else — other paths, other methods, an ID that is not digits — goes on
to the router untouched, so routing, 404s, 405s and redirects are the router's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

PREFIX: Final = "/api/v1/reqs/"
_CREATE: Final = "/api/v1/reqs/"
_ONE: Final = "/api/v1/reqs/{rid}"
_ACTIONS: Final = {
    "close": "/api/v1/reqs/{rid}/close",
    "acquire_worker": "/api/v1/reqs/{rid}/acquire_worker",
}


class HotRoutes:
    """ASGI middleware in front of the router for the job cycle's requests."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        handlers: Mapping[type[Exception], Handler],
    ) -> None:
        self._app = app
        self._handlers = dict(handlers)
        self._routes: dict[tuple[str, str], Route] = {}
        for route in routes:
            if isinstance(route, Route) and route.methods:
                for method in route.methods:
                    # The first route for a path and method is the one the router takes.
                    self._routes.setdefault((route.path, method), route)
        wanted = [_CREATE, _ONE, *_ACTIONS.values()]
        missing = [p for p in wanted if not any(path == p for path, _ in self._routes)]
        if missing:
            raise ValueError(f"hot routes missing from the app: {', '.join(missing)}")

    def route_for(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and path parameters this middleware takes ``method path`` to, or None
        when the router should decide."""
        if not path.startswith(PREFIX):
            return None
        rest = path[len(PREFIX) :]
        if not rest:
            template, params = _CREATE, {}
        else:
            rid, slash, action = rest.partition("/")
            if not (rid.isascii() and rid.isdigit()):
                return None
            if not slash:
                template = _ONE
            elif action in _ACTIONS:
                template = _ACTIONS[action]
            else:
                return None
            params = {"rid": rid}
        route = self._routes.get((template, method))
        return None if route is None else (route, params)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.route_for(scope["method"], scope["path"])
        if found is None:
            await self._app(scope, receive, send)
            return
        route, params = found
        # What Router.app and Route.matches put in the scope (the metrics read "route").
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # to the server-error layer, as from the router
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler
        return None
