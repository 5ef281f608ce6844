"""``create_app``: the Starlette app from explicit routes, middleware and handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from coordinator.api.auth import Authenticator
from coordinator.api.dashboard import Dashboard
from coordinator.api.errors import boruta_error, http_error, internal_error, route_not_found
from coordinator.api.events import EventsEndpoint, redact_access_log
from coordinator.api.feed import FeedEndpoints
from coordinator.api.health import Health
from coordinator.api.quotas import QuotaEndpoints
from coordinator.api.v1 import V1
from coordinator.domain.clock import Clock
from coordinator.errors import BorutaError
from coordinator.feed.events import Broadcaster
from coordinator.feed.metrics import HttpMetrics, Metrics
from coordinator.feed.panels import Panels
from coordinator.feed.webhooks import Webhooks
from coordinator.service.operations import Service
from coordinator.service.quotas import QuotaAdmin
from coordinator.settings import Settings
from coordinator.store import Store

logger = logging.getLogger(__name__)


@dataclass
class HttpParts:
    """What the HTTP side serves: the service, the feed and the store's users and history."""

    settings: Settings
    store: Store
    clock: Clock
    auth: Authenticator
    service: Service
    panels: Panels
    events: Broadcaster
    webhooks: Webhooks
    metrics: Metrics


def create_app(
    parts: HttpParts, lifespan: Callable[[], AbstractAsyncContextManager[None]]
) -> Starlette:
    """The coordinator's ASGI app; ``lifespan`` runs everything behind it
    (``coordinator.assembly`` builds both)."""
    settings, auth = parts.settings, parts.auth
    v1 = V1(parts.service, auth, settings.max_body_bytes, settings.max_acquire_wait)
    dashboard = Dashboard(parts.service, parts.panels, auth)
    feed = FeedEndpoints(
        parts.store, auth, parts.clock, parts.webhooks, parts.metrics, settings.metrics_public
    )
    redact_access_log()

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with lifespan():
            yield

    app = Starlette(
        routes=[
            *v1.routes(),
            *Health(parts.store).routes(),
            *dashboard.routes(),
            *EventsEndpoint(parts.events, auth).routes(),
            *feed.routes(),
            *QuotaEndpoints(QuotaAdmin(parts.service, parts.store, parts.clock), auth).routes(),
        ],
        middleware=[Middleware(HttpMetrics, metrics=parts.metrics)],
        exception_handlers={
            BorutaError: boruta_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
        lifespan=app_lifespan,
    )
    # The original redirects with 308 (httptreemux); Starlette's own slash redirect is 307.
    app.router.redirect_slashes = False
    app.router.default = _not_found(app)
    return app


def _not_found(app: Starlette) -> ASGIApp:
    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        response = _redirect_or_404(app, Request(scope))
        await response(scope, receive, send)

    return default


def _redirect_or_404(app: Starlette, request: Request) -> Response:
    """The original's fallbacks (docs/boruta-api.md §routing): 308 for unversioned ``/api/`` paths
    and for a trailing-slash mismatch (redirects, not errors), else 404 route-not-found."""
    path = request.url.path
    query = f"?{request.url.query}" if request.url.query else ""
    if path.startswith("/api/") and not path.startswith("/api/v1/"):
        return RedirectResponse("/api/v1/" + path.removeprefix("/api/") + query, 308)
    other = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    if any(route.matches(scope)[0] is not Match.NONE for route in app.routes):
        return RedirectResponse(other + query, 308)
    return route_not_found(path)
