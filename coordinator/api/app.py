"""``create_app``: the Starlette app from explicit routes, middleware and handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from coordinator.api.auth import Authenticator
from coordinator.api.dashboard import Dashboard
from coordinator.api.errors import boruta_error, http_error, internal_error
from coordinator.api.events import EventsEndpoint
from coordinator.api.feed import FeedEndpoints
from coordinator.api.health import Health
from coordinator.api.hot import Handler, HotRoutes
from coordinator.api.peer import PeerRoutes
from coordinator.api.quotas import QuotaEndpoints
from coordinator.api.redact import redact_logs
from coordinator.api.routing import fallback
from coordinator.api.v1 import V1
from coordinator.api.whoami import WhoAmI
from coordinator.domain.clock import Clock
from coordinator.errors import BorutaError
from coordinator.feed.events import Broadcaster
from coordinator.feed.metrics import HttpMetrics, Metrics
from coordinator.feed.panels import Panels
from coordinator.feed.webhooks import Webhooks
from coordinator.link.enrolment import StoreEnrolment
from coordinator.link.holders import Holders
from coordinator.service.operations import Service
from coordinator.service.quotas import QuotaAdmin
from coordinator.settings import Settings
from coordinator.store import Store

logger = logging.getLogger(__name__)

# The errors answered by a handler of their own; anything else is a 500 (internal_error).
HANDLED: dict[type[Exception], Handler] = {BorutaError: boruta_error, HTTPException: http_error}


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
    holders: Holders | None = None  # with followers (PostgreSQL): the peer routes


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
    redact_logs()

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        started = False
        try:
            async with lifespan():
                started = True
                yield
        except BaseException as exc:
            if not started:  # the server tells why in one line (httpd.startfail)
                app.state.start_error = exc
            raise

    v1_routes = v1.routes()
    app = Starlette(
        routes=[
            *v1_routes,
            *Health(parts.store, settings.max_acquire_wait).routes(),
            *dashboard.routes(),
            *EventsEndpoint(parts.events, auth).routes(),
            *feed.routes(),
            *WhoAmI(auth).routes(),
            *QuotaEndpoints(QuotaAdmin(parts.service, parts.store, parts.clock), auth).routes(),
            *(
                PeerRoutes(
                    parts.holders, parts.panels, StoreEnrolment(parts.store, parts.clock)
                ).routes()
                if parts.holders is not None
                else []
            ),
        ],
        middleware=[
            Middleware(HttpMetrics, metrics=parts.metrics),
            Middleware(HotRoutes, routes=v1_routes, handlers=HANDLED),
        ],
        exception_handlers={**HANDLED, Exception: internal_error},
        lifespan=app_lifespan,
    )
    # The original redirects with 308 (httptreemux); Starlette's own slash redirect is 307.
    app.router.redirect_slashes = False
    app.router.default = fallback(app.routes)
    return app
