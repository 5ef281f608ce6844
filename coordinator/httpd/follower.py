"""A follower: while another coordinator serves the database (the leader), this one
answers the API on its own HTTP port by forwarding it there, says on ``/healthz`` whether
it can, and takes the database over when the leader's lock goes
(docs/failover.md §scale-out)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

import anyio
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from coordinator.api.auth import Authenticator
from coordinator.api.errors import error_response
from coordinator.assembly import binds_tunnel_ports, link_server, tunnels_for
from coordinator.errors import (
    ERROR_CODE_HEADER,
    LeaderUnreachable,
    ServingTaken,
    StoreUnavailable,
    Unauthorized,
)
from coordinator.httpd.forward import Forwarder, Leader, Pool
from coordinator.httpd.guard import ConnectionGuard, ConnectionLimits
from coordinator.httpd.holding import DryadCalls
from coordinator.httpd.limits import raise_open_files
from coordinator.httpd.logwriter import LogWriter
from coordinator.httpd.server import guarded_config, loop_factory
from coordinator.link import peerwire
from coordinator.link.announcer import LeaderLinks
from coordinator.link.peerclient import PeerClient
from coordinator.link.registry import DryadLink
from coordinator.service.interfaces import Tunnels
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from coordinator.tunnels.listeners import LinkTunnels

logger = logging.getLogger("coordinator")

FOLLOWING: Final = "follower ready on http://%s:%d: forwarding the API to the leader"
POLL: Final = 0.5  # seconds between a follower's tries to take the serving lock
# What uvicorn logs when an app returns without ending its answer: the forwarder does it
# on purpose for an answer the leader broke off, and logs that itself.
_UNFINISHED: Final = "ASGI callable returned without completing response."


class Standby:
    """Tries to take the serving lock, saying once what it waits for."""

    def __init__(self, store: SqlStore, holder: str, peer_url: str, said: str = "") -> None:
        self._store = store
        self._holder = holder
        self._peer_url = peer_url
        self.said = said
        self.database: str | None = None  # why the database does not answer, or None

    def attempt(self) -> bool:
        """One try (blocking): whether this coordinator holds the lock now.

        :raises ServingTaken: on SQLite, where nobody stands by.
        """
        try:
            self._store.claim_serving(self._holder, self._peer_url)
        except ServingTaken as exc:
            if self._store.sqlite_path is not None:
                raise
            news = f"standby: {exc.message}; this coordinator takes over when it stops"
            self.database = None
        except StoreUnavailable as exc:
            news = f"standby: {exc.message}; waiting for the database"
            self.database = exc.message
        else:
            return True
        if news != self.said:
            logger.warning("%s", news)
            self.said = news
        return False


class Follower:
    """The follower's app: ``/healthz`` and ``/metrics`` of its own, the rest forwarded.

    Its poll loop (:meth:`run`) tries the lock, learns where the leader is, and probes it.
    """

    def __init__(self, store: SqlStore, standby: Standby, settings: Settings) -> None:
        self.store = store
        self._standby = standby
        self._metrics_public = settings.metrics_public
        self._auth = Authenticator(store)
        self.leader: Leader | None = None
        self.problem: str | None = "starting"  # why /healthz says not ready, or None
        self._secret = ""
        self.forwarder = Forwarder(
            lambda: self.leader,
            settings.max_body_bytes,
            # The leader admits this many connections from one address: all of ours.
            Pool(settings.http_max_per_client, settings.http_keepalive_timeout / 2),
        )
        # The dryads linked to this follower (docs/failover.md §scale-out, "step 2"): their
        # calls go to the leader, and the leader's calls to them come in on /peer/.
        self.peers = PeerClient()
        self.link: DryadLink | None = None
        self.links: LeaderLinks | None = None
        self.tunnels: Tunnels | None = None  # the tunnels of the jobs on our links
        if not (settings.link and settings.follower_link):
            pass  # the dryads dial the leader only
        elif settings.peer_address:
            self.link = DryadLink(store)
            self.links = LeaderLinks(self.peers, settings.peer_address, self._leader_url)
            self.link.service = self.links
            self.link.enrolment = self.links  # the farm's writes are the leader's
            self.link.panels = self.links
            # Its tunnels' ports in memory only: the table is the leader's (one range
            # per host, rows by port number), and a follower writes nothing of the farm's.
            self.tunnels = tunnels_for(settings, None, self.link)
        else:
            logger.warning(
                "no dryad link on this follower: the leader could not reach it (the HTTP "
                "port is chosen at start; set peer_url or a port)"
            )
        self._peer_calls = DryadCalls(self.link, lambda: self._secret, self.tunnels)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Figures(self))
        self.registry.register(self.peers.figures)

    def _leader_url(self) -> str | None:
        return self.leader.url if self.leader is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await self._healthz(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/metrics":
            await self._metrics(scope, receive, send)
        elif scope["type"] == "http" and scope["path"].startswith(peerwire.PREFIX):
            await self._peer_calls(scope, receive, send)  # never forwarded
        else:
            await self.forwarder(scope, receive, send)

    async def run(self, stop: Callable[[], None]) -> bool:
        """Poll until this coordinator takes the lock (then cut the forwarded answers,
        call ``stop`` and return True)."""
        while True:
            if await anyio.to_thread.run_sync(self._standby.attempt):
                logger.warning("now serving %s", self.store.url)
                await self.forwarder.stop()
                stop()
                return True
            await self._learn()
            await anyio.sleep(POLL)

    async def _learn(self) -> None:
        """Where the leader is, whether it answers: the leader and the problem, updated."""
        if self._standby.database is not None:
            # The leader may still serve: keep forwarding there, but be drained.
            self.problem = f"cannot reach the database: {self._standby.database}"
            return
        try:
            now = await anyio.to_thread.run_sync(self.store.who_serves)
            if not self._secret:
                self._secret = await anyio.to_thread.run_sync(self.store.peer_secret)
                self.peers.secret = self._secret
        except StoreUnavailable as exc:
            self.problem = f"cannot reach the database: {exc.message}"
            return
        if not now.served:
            self.leader, self.problem = None, "no coordinator serves the farm now"
            return
        if not now.peer_url or not self._secret:
            self.leader = None
            self.problem = f"{now.holder or 'the leader'} has not said where it is reached"
            return
        leader = Leader(now.peer_url, self._secret)
        if leader != self.leader:
            logger.warning("following %s at %s", now.holder or "the leader", now.peer_url)
        self.leader = leader
        self.problem = await self.forwarder.probe(leader)

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        leader = self.leader.url if self.leader is not None else ""
        if self.problem is None:
            answer = JSONResponse({"status": "ok", "role": "follower", "leader": leader})
        else:
            answer = JSONResponse(
                {"status": "not ready", "role": "follower", "reason": self.problem},
                503,
                headers={"Retry-After": "1", ERROR_CODE_HEADER: LeaderUnreachable.code},
            )
        await answer(scope, receive, send)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._metrics_public:
            try:
                await self._auth.user(HTTPConnection(scope))
            except (Unauthorized, StoreUnavailable) as exc:
                await error_response(exc)(scope, receive, send)
                return
        exposition = generate_latest(self.registry)
        answer = Response(exposition, media_type="text/plain; version=0.0.4; charset=utf-8")
        await answer(scope, receive, send)


class _Figures(Collector):
    """This process's figures as a follower, read at scrape time."""

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    def collect(self) -> Iterator[Metric]:
        forwarder = self._follower.forwarder
        role = GaugeMetricFamily(
            "boruta_coordinator_role", "1 for this process's role", labels=["role"]
        )
        role.add_metric(["follower"], 1)
        yield role
        yield GaugeMetricFamily(
            "boruta_follower_ready",
            "Whether /healthz says ready: the database and the leader answer",
            value=int(self._follower.problem is None),
        )
        link = self._follower.link
        yield GaugeMetricFamily(
            "boruta_follower_links",
            "Dryad links this follower holds now (follower_link)",
            value=len(link.links()) if link is not None else 0,
        )
        yield GaugeMetricFamily(
            "boruta_follower_in_flight",
            "Requests being forwarded to the leader now (event streams included)",
            value=forwarder.in_flight,
        )
        answered = CounterMetricFamily(
            "boruta_follower_forwarded",
            "Leader's answers passed on since this process started, by status class",
            labels=["status"],
        )
        for status, n in sorted(forwarder.answered.items()):
            answered.add_metric([status], n)
        yield answered
        failed = CounterMetricFamily(
            "boruta_follower_failures",
            "Requests not forwarded, or cut, since this process started, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(forwarder.failed.items()):
            failed.add_metric([reason], n)
        yield failed


def follow(store: SqlStore, standby: Standby, settings: Settings) -> bool:
    """Serve as a follower on ``settings.http`` until this coordinator takes the serving
    lock (True) or a signal (False)."""
    files = raise_open_files()
    guard = ConnectionGuard(ConnectionLimits(settings.http_max_per_client, files.for_http))
    follower = Follower(store, standby, settings)
    # The leader's Date goes through as it is, as every other header of its answer.
    config = guarded_config(follower, settings, guard, files, lifespan="off", date_header=False)
    config.timeout_graceful_shutdown = 2
    logs = LogWriter()
    server = _FollowerServer(config, logs)
    quiet = _Unfinished()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        with (
            _tunnel_range(settings, follower),
            asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner,
        ):
            return runner.run(_follow(server, follower, settings))
    finally:
        logs.close()
        logging.getLogger("uvicorn.error").removeFilter(quiet)


def _tunnel_range(settings: Settings, follower: Follower) -> AbstractContextManager[Any]:
    """A follower holding links claims its tunnel range as a leader does
    (docs/failover.md §tunnel range claim); released when it stops following.

    :raises TunnelUnavailable: when another coordinator here has an overlapping range.
    """
    from coordinator.tunnels.claim import claim

    if follower.link is None or not binds_tunnel_ports(settings):
        return nullcontext()
    return claim(settings.tunnel_port_range, settings.tunnel_bind_host)


async def _follow(server: _FollowerServer, follower: Follower, settings: Settings) -> bool:
    took = False
    try:
        async with anyio.create_task_group() as tasks:

            async def poll() -> None:
                nonlocal took
                took = await follower.run(server.leave)

            tasks.start_soon(poll)
            if isinstance(follower.tunnels, LinkTunnels):
                await follower.tunnels.start()
            if follower.link is not None and follower.links is not None:
                # The link's sessions end when this follower stops or takes over: its
                # dryads dial again (this coordinator's link port, once it leads).
                await tasks.start(link_server(settings, follower.store, follower.link).run)
                await tasks.start(follower.links.run)
            await server.serve()
            tasks.cancel_scope.cancel()
    finally:
        await follower.forwarder.stop()
        await follower.peers.aclose()
        if isinstance(follower.tunnels, LinkTunnels):
            await follower.tunnels.aclose()
    return took


class _FollowerServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, logs: LogWriter) -> None:
        super().__init__(config)
        self._logs = logs

    def leave(self) -> None:
        """Stop serving as a follower: this coordinator takes the database over."""
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            gc.collect()  # what start-up made is kept out of the collector's full passes
            gc.freeze()
            logger.info(FOLLOWING, host, port)

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        # Before uvicorn raises a signal it caught again, which ends the process.
        self._logs.close()


class _Unfinished(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UNFINISHED
