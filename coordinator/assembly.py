"""The composition root: the store, service, dryad link, tunnels, feed and HTTP app, wired.

``assemble`` is the one place that knows every part; ``cli.py``, the tests and the
benches build a coordinator through it. Its ``running`` context starts the parts in
order (store migration, tunnels, service, feed, then the link) and stops them in
reverse, and is the HTTP app's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette

from coordinator.api.app import HttpParts, create_app
from coordinator.api.auth import Authenticator
from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.feed.events import Broadcaster
from coordinator.feed.looplag import LoopLag
from coordinator.feed.metrics import Metrics
from coordinator.feed.panels import Panels
from coordinator.feed.webhooks import WebhookPolicy, Webhooks
from coordinator.link.figures import HolderFigures
from coordinator.link.holders import Holders
from coordinator.link.peerclient import PeerClient
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.interfaces import Dryads, Tunnels
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.settings import Settings
from coordinator.store import Store
from coordinator.tunnels.dialback import DialBackListener
from coordinator.tunnels.direct import Direct
from coordinator.tunnels.link import ThroughLink
from coordinator.tunnels.listeners import Connector, LinkTunnels
from coordinator.tunnels.none import DirectAccess
from coordinator.tunnels.relayed import Relayed
from coordinator.tunnels.routed import RoutedTunnels
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
    """What the coordinator is built from; tests pass their own clock, dryads or tunnels.

    ``dryads=None`` means the dryad link (an SSH server in this process) when
    ``settings.link`` is set, else ``NoDryadLink``; given dryads replace the link.
    ``tunnels=None`` means ``LinkTunnels`` as ``settings.tunnel_mode`` says (``dialback``
    and ``link`` need the dryad link), else ``DirectAccess``.
    """

    store: Store
    dryads: Dryads | None = None
    tunnels: Tunnels | None = None
    clock: Clock = field(default_factory=SystemClock)
    keys: KeyPool | None = None  # None: a pool as the settings say
    # With followers (PostgreSQL): the leader's calls to the other coordinators, through
    # which dryads linked to them are reached (docs/failover.md §scale-out).
    peers: PeerClient | None = None


@dataclass
class Coordinator:
    """One coordinator process's parts; ``app`` is its HTTP side."""

    settings: Settings
    store: Store
    service: Service
    link: DryadLink | None
    tunnels: Tunnels
    panels: Panels
    events: Broadcaster
    webhooks: Webhooks
    metrics: Metrics
    holders: Holders | None = None
    app: Starlette = field(init=False)
    lag: LoopLag = field(init=False)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Migrate the store and run the service, the feed and the dryad link."""
        await anyio.to_thread.run_sync(self.store.migrate)
        tunnels = self.tunnels
        if isinstance(tunnels, LinkTunnels):
            await tunnels.start()  # before the service re-opens running jobs' tunnels
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.service.run)
                await tg.start(self.events.run)
                await tg.start(self.webhooks.run)
                tg.start_soon(self.lag.run)
                if self.holders is not None:
                    await tg.start(self.holders.run)
                # The link stops first, so that its sessions end while the service still runs.
                async with anyio.create_task_group() as link_tg:
                    if self.link is not None:
                        server = link_server(self.settings, self.store, self.link)
                        await link_tg.start(server.run)
                    yield
                    link_tg.cancel_scope.cancel()
                tg.cancel_scope.cancel()
        finally:
            if isinstance(tunnels, LinkTunnels):
                await tunnels.aclose()
            if self.holders is not None:
                await self.holders.aclose()


def assemble(settings: Settings, parts: Parts) -> Coordinator:
    """Build every part of a coordinator from ``settings``; nothing runs until ``running``."""
    link = DryadLink(parts.store, parts.clock) if parts.dryads is None and settings.link else None
    holders = Holders(link, parts.peers) if parts.peers is not None else None
    dryads: Dryads
    if parts.dryads is not None:
        dryads = parts.dryads
    else:
        dryads = holders or link or NoDryadLink()
    tunnels = (
        parts.tunnels if parts.tunnels is not None else tunnels_for(settings, parts.store, link)
    )
    routed: Tunnels = tunnels
    if holders is not None and parts.peers is not None:
        # Tunnels follow links; a holder found gone loses its claims at once.
        routed = RoutedTunnels(tunnels, holders.holder, parts.peers, holders.lost)
    keys = parts.keys if parts.keys is not None else KeyPool(settings.key_stock)
    service = Service(
        parts.store,
        dryads,
        routed,
        parts.clock,
        settings.policy,
        settings.job_username,
        keys,
        link_grace=settings.link_grace,
        self_heal=settings.self_heal,
        scheduling=settings.scheduling_rules,
        finished_in_memory=settings.finished_in_memory,
    )
    panels = Panels(parts.clock)
    if holders is not None:
        holders.service = service  # the links' ups and downs, local and announced
        holders.moved = service.relinked
    if link is not None:
        link.service = holders or service
        link.panels = panels
    events = Broadcaster(parts.store)
    service.publish = events.publish  # each commit's transitions, from memory
    panels.publish = events.publish_ephemeral  # each board's panel, to the dashboards
    webhooks = Webhooks(parts.store, _webhook_policy(settings))
    metrics = Metrics(service, keys, parts.store)
    events.add_listener(webhooks.wake)
    events.add_listener(metrics.observe)
    service.health_listeners.append(metrics.health_reported)
    coordinator = Coordinator(
        settings, parts.store, service, link, tunnels, panels, events, webhooks, metrics, holders
    )
    http = HttpParts(
        settings=settings,
        store=parts.store,
        clock=parts.clock,
        auth=Authenticator(parts.store),
        service=service,
        panels=panels,
        events=events,
        webhooks=webhooks,
        metrics=metrics,
        holders=holders,
    )
    coordinator.lag = LoopLag(settings.loop_lag_probe)
    metrics.registry.register(coordinator.lag)
    if holders is not None:
        metrics.registry.register(HolderFigures(holders))
    if parts.peers is not None:
        metrics.registry.register(parts.peers.figures)
    coordinator.app = create_app(http, coordinator.running)
    coordinator.app.state.coordinator = coordinator  # for tests and benches that hold the app
    return coordinator


def binds_tunnel_ports(settings: Settings) -> bool:
    """Whether a coordinator assembled from ``settings`` alone (no dryads or tunnels given)
    listens on tunnel ports: ``tunnel_mode`` "direct", or a mode that needs the dryad link
    with the link on (``_tunnels``)."""
    mode = settings.tunnel_mode
    return mode == "direct" or (mode in ("link", "dialback") and bool(settings.link))


def tunnels_for(settings: Settings, store: Store | None, link: DryadLink | None) -> Tunnels:
    """This coordinator's own tunnels for ``settings.tunnel_mode`` (a leader's, or without a
    store a follower's, whose ports are not stored: docs/failover.md §scale-out)."""
    connector: Connector
    if settings.tunnel_mode == "direct":
        connector = Direct()
    elif settings.tunnel_mode == "link" and link is not None:
        connector = ThroughLink(link)
    elif settings.tunnel_mode == "dialback" and link is not None:
        # The link carries what the dial-back cannot (tunnels.relayed).
        listener = DialBackListener(*settings.dialback_address)
        connector = Relayed(link, listener, ThroughLink(link))
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


def link_server(settings: Settings, store: Store, link: DryadLink) -> LinkServer:
    """The link's SSH server on ``settings.link`` (a leader's, or a follower's)."""
    host, _, port = settings.link.rpartition(":")
    config = LinkConfig(
        host.strip("[]"),  # "" listens on every interface
        int(port),
        settings.link_host_key_path,
        settings.link_keepalive,
    )
    return LinkServer(config, store, link)
