"""``create_app``: the Starlette app from explicit routes and handlers, with a lifespan that
opens the store and runs the service and the dryad link."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from coordinator.api.admin import Admin
from coordinator.api.auth import Authenticator
from coordinator.api.dashboard import Dashboard
from coordinator.api.errors import boruta_error, error_response, internal_error
from coordinator.api.events import EventsEndpoint, redact_access_log
from coordinator.api.ops import Ops
from coordinator.api.v1 import V1, json_response
from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.errors import BorutaError
from coordinator.events import Broadcaster
from coordinator.keys import KeyPool
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.metrics import HttpMetrics, Metrics
from coordinator.panels import Panels
from coordinator.ports import DirectAccess, Dryads, Tunnels
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.store import Store
from coordinator.tunnels import Direct, LinkTunnels, ThroughLink
from coordinator.webhooks import WebhookPolicy, Webhooks
from coordinator.wire import Display, HealthReport

logger = logging.getLogger(__name__)


class NoDryadLink:
    """Without the dryad link in this process, no dryad can be reached."""

    async def _away(self) -> None:
        raise ConnectionError("dryad link is not running")

    async def prepare(self, worker: WorkerUUID, public_key: str) -> None:
        await self._away()

    async def maintenance(self, worker: WorkerUUID, message: str) -> None:
        await self._away()

    async def release(self, worker: WorkerUUID) -> None:
        await self._away()

    async def healthcheck(self, worker: WorkerUUID) -> HealthReport:
        await self._away()
        raise AssertionError("unreachable")

    async def identify(self, worker: WorkerUUID, seconds: float) -> None:
        await self._away()

    async def display(self, worker: WorkerUUID, panel: Display) -> None:
        await self._away()


@dataclass
class Parts:
    """What the app is built from; tests pass their own clock, dryads or tunnels.

    ``dryads=None`` means the dryad link (an SSH server in this process) when
    ``settings.link`` is set, else ``NoDryadLink``; given dryads replace the link.
    ``tunnels=None`` means ``LinkTunnels`` as ``settings.tunnel_mode`` says (``link``
    needs the dryad link), else ``DirectAccess``.
    """

    store: Store
    dryads: Dryads | None = None
    tunnels: Tunnels | None = None
    clock: Clock = field(default_factory=SystemClock)
    keys: KeyPool = field(default_factory=KeyPool)


def create_app(settings: Settings, parts: Parts) -> Starlette:
    """The coordinator's ASGI app; its lifespan migrates the store and runs the service,
    then the dryad link."""
    link = DryadLink(parts.store, parts.clock) if parts.dryads is None and settings.link else None
    dryads: Dryads = parts.dryads if parts.dryads is not None else link or NoDryadLink()
    tunnels = parts.tunnels if parts.tunnels is not None else _tunnels(settings, parts.store, link)
    service = Service(
        parts.store,
        dryads,
        tunnels,
        parts.clock,
        settings.policy,
        settings.job_username,
        parts.keys,
        link_grace=settings.link_grace,
        self_heal=settings.self_heal,
    )
    panels = Panels(parts.clock)
    if link is not None:
        link.service = service
        link.panels = panels
    auth = Authenticator(parts.store)
    v1 = V1(service, auth, settings.max_body_bytes, settings.max_acquire_wait)
    dashboard = Dashboard(service, panels, auth)
    events = Broadcaster(service, parts.store)
    panels.publish = events.publish_ephemeral  # each board's panel, to the dashboards
    webhooks = Webhooks(parts.store, _webhook_policy(settings))
    metrics = Metrics(service)
    events.add_listener(webhooks.wake)
    events.add_listener(metrics.observe)
    admin = Admin(parts.store, auth, parts.clock, webhooks, metrics, settings.metrics_public)
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(parts.store.migrate)
        if isinstance(tunnels, LinkTunnels):
            await tunnels.start()  # before the service re-opens running jobs' tunnels
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(service.run)
                await tg.start(events.run)
                await tg.start(webhooks.run)
                # The link stops first, so that its sessions end while the service still runs.
                async with anyio.create_task_group() as link_tg:
                    if link is not None:
                        await link_tg.start(_link_server(settings, parts.store, link).run)
                    yield
                    link_tg.cancel_scope.cancel()
                tg.cancel_scope.cancel()
        finally:
            if isinstance(tunnels, LinkTunnels):
                await tunnels.aclose()

    app = Starlette(
        routes=[
            *v1.routes(),
            *Ops(parts.store).routes(),
            *dashboard.routes(),
            *EventsEndpoint(events, auth).routes(),
            *admin.routes(),
        ],
        middleware=[Middleware(HttpMetrics, metrics=metrics)],
        exception_handlers={
            BorutaError: boruta_error,
            HTTPException: _http_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.link = link
    app.state.events = events  # publish_ephemeral() for the dashboard's panels
    app.state.webhooks = webhooks
    app.state.metrics = metrics
    app.state.tunnels = tunnels
    app.state.panels = panels
    # The original redirects with 308 (httptreemux); Starlette's own slash redirect is 307.
    app.router.redirect_slashes = False
    app.router.default = _not_found(app)
    return app


def _tunnels(settings: Settings, store: Store, link: DryadLink | None) -> Tunnels:
    if settings.tunnel_mode == "direct":
        connector: ThroughLink | Direct = Direct()
    elif settings.tunnel_mode == "link" and link is not None:
        connector = ThroughLink(link)
    else:
        return DirectAccess()  # "none", or injected dryads with no link to carry tunnels
    return LinkTunnels(
        connector,
        store,
        settings.tunnel_port_range,
        settings.tunnel_bind_host,
        settings.public_host,
    )


def _webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        timeout=settings.webhook_timeout,
        max_attempts=settings.webhook_max_attempts,
        backoff=settings.webhook_backoff,
    )


def _link_server(settings: Settings, store: Store, link: DryadLink) -> LinkServer:
    host, _, port = settings.link.rpartition(":")
    config = LinkConfig(
        host.strip("[]"),  # "" listens on every interface
        int(port),
        settings.link_host_key_path,
        settings.link_keepalive,
    )
    return LinkServer(config, store, link)


def _not_found(app: Starlette) -> ASGIApp:
    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        response = _redirect_or_404(app, Request(scope))
        await response(scope, receive, send)

    return default


def _redirect_or_404(app: Starlette, request: Request) -> Response:
    """The original's routing fallbacks (spec §1.3): 308 for unversioned ``/api/`` paths
    and for a trailing-slash mismatch, else 404 with ``{"message": "<path> not found"}``."""
    path = request.url.path
    query = f"?{request.url.query}" if request.url.query else ""
    if path.startswith("/api/") and not path.startswith("/api/v1/"):
        return RedirectResponse("/api/v1/" + path.removeprefix("/api/") + query, 308)
    other = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    if any(route.matches(scope)[0] is not Match.NONE for route in app.routes):
        return RedirectResponse(other + query, 308)
    return json_response({"message": f"{path} not found"}, 404)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "error")
    error = BorutaError(str(detail))
    error.status = status  # type: ignore[misc]
    response = error_response(error)
    response.headers.update(getattr(exc, "headers", None) or {})  # 405 must say Allow
    return response
