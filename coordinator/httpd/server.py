"""``serve``: the coordinator's app under uvicorn, guarded, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import anyio
import uvicorn
import uvloop
from starlette.types import ASGIApp

from coordinator.assembly import Coordinator
from coordinator.httpd.gcpolicy import bound_full_passes
from coordinator.httpd.guard import ConnectionGuard, ConnectionLimits
from coordinator.httpd.heap import limit_arenas
from coordinator.httpd.lease import CHECK_EVERY, watch
from coordinator.httpd.limits import OpenFiles, raise_open_files
from coordinator.httpd.logwriter import LogWriter
from coordinator.httpd.peergate import PeerGate
from coordinator.httpd.protocol import Timeouts, guarded
from coordinator.httpd.startfail import NotStarted, QuietKnownFailure, reason_in, why_not_started
from coordinator.settings import Settings
from coordinator.store.serving import Lease

logger = logging.getLogger("coordinator")

READY: Final = "coordinator ready on http://%s:%d"  # the e2e tests and scripts wait for this
SUMMARY_INTERVAL: Final = 60.0  # seconds between the guard's summary lines
# asyncio reports a failed accept() (no descriptor left) through the loop's exception
# handler, with a traceback, once per retry; the guard counts it instead.
_ACCEPT_FAILED: Final = "socket.accept() out of system resource"


Ready = Callable[[], Awaitable[None]]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``event_loop`` names. uvloop runs the same protocols and transports
    in C: an HTTP request costs about half the CPU (docs/architecture.md §the event loop)."""
    if name == "uvloop":
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def serve(
    coordinator: Coordinator,
    settings: Settings,
    lease: Callable[[], Lease] | None = None,
    *,
    before_ready: Ready | None = None,
    peer_secret: Callable[[], str] | None = None,
) -> bool:
    """Run until a signal, or until ``lease`` says another coordinator took the database
    over (then return True); the open-file limit is raised and malloc's arenas are
    limited first. ``before_ready`` runs once the server listens, before the ready line
    (the benches prepare their farm in it, so that they measure this very server path).
    ``peer_secret`` reads the farm's peer secret: requests that followers forward are
    then admitted with their client's address (docs/failover.md §scale-out)."""
    limit_arenas()
    bound_full_passes()
    files = raise_open_files()
    guard = ConnectionGuard(ConnectionLimits(settings.http_max_per_client, files.for_http))
    app: ASGIApp = coordinator.app
    if peer_secret is not None:
        app = PeerGate(app, peer_secret)
    config = guarded_config(app, settings, guard, files, lifespan="on")
    logs = LogWriter()
    server = _Server(config, coordinator, guard, before_ready, logs)
    quiet = QuietKnownFailure(coordinator.app.state)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(_run(server, guard, SUMMARY_INTERVAL, lease, settings.lease_grace))
    except BaseExceptionGroup as group:
        reason = reason_in(group)
        if reason is None:
            raise
        raise reason from None  # told as one line (docstring of httpd.startfail)
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        logs.close()
    return server.lost


def guarded_config(
    app: ASGIApp,
    settings: Settings,
    guard: ConnectionGuard,
    files: OpenFiles,
    *,
    lifespan: Literal["on", "off"],
    date_header: bool = True,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``settings.http``: the guarded protocol, its
    timeouts, and the accept batch the open-file limit allows."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http=guarded(guard, Timeouts(settings.http_header_timeout, settings.http_send_timeout)),
        timeout_keep_alive=max(1, round(settings.http_keepalive_timeout)),
        backlog=files.accept_batch,
        lifespan=lifespan,
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
        date_header=date_header,
        # Nothing reads a client address or scheme from the scope (the guard takes the
        # peer from the socket), and rewriting them from X-Forwarded-* headers cost
        # CPU on every request.
        proxy_headers=False,
    )


async def _run(
    server: _Server,
    guard: ConnectionGuard,
    interval: float,
    lease: Callable[[], Lease] | None,
    grace: float,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_accept_failures_counted(guard))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_summaries, guard, interval)
        if lease is not None:
            tasks.start_soon(watch, lease, server.give_up, CHECK_EVERY, grace)
        await server.serve()
        tasks.cancel_scope.cancel()


async def _summaries(guard: ConnectionGuard, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        _report(guard)


def _report(guard: ConnectionGuard) -> None:
    line = guard.summary()
    if line is not None:
        logger.warning(line)


def _freeze_heap() -> None:
    """Exclude what start-up made (modules, the farm loaded from the store) from the
    collector's full passes: with 10,000 requests in memory one pass held the event loop
    for 50 to 300 ms (docs/events.md §long steps). Collected first, so that no garbage is
    kept for good; what comes later is collected as usual."""
    gc.collect()
    gc.freeze()
    logger.debug("heap frozen after start-up: %d objects", gc.get_freeze_count())


def _accept_failures_counted(guard: ConnectionGuard) -> Any:
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            guard.count("refused: no descriptor left", "?")
            return
        loop.default_exception_handler(context)

    return handler


class _Server(uvicorn.Server):
    """Logs the ready line, ends event streams on a signal, and reports the guard's last
    interval at shutdown (uvicorn raises the signal again once it is done)."""

    def __init__(
        self,
        config: uvicorn.Config,
        coordinator: Coordinator,
        guard: ConnectionGuard,
        before_ready: Ready | None = None,
        logs: LogWriter | None = None,
    ) -> None:
        super().__init__(config)
        self._coordinator = coordinator
        self._guard = guard
        self._before_ready = before_ready
        self._logs = logs
        self.lost = False  # another coordinator took the database over

    def give_up(self) -> None:
        """Stop serving as on a signal: the database is another coordinator's now."""
        self.lost = True
        self._coordinator.events.close()
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit as exc:  # uvicorn's way to say it could not start
            state, config = self._coordinator.app.state, self.config
            raise NotStarted(why_not_started(exc, state, config.host, config.port)) from None
        if self.started:
            if self._before_ready is not None:
                await self._before_ready()
            _freeze_heap()
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            logger.info(READY, host, port)

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        _report(self._guard)
        if self._logs is not None:
            self._logs.close()  # before uvicorn raises the signal again, which ends us

    def handle_exit(self, sig: int, frame: Any) -> None:
        # uvicorn waits for open responses before the lifespan ends; an event stream
        # never ends by itself, so end them all, or SIGTERM would hang on a dashboard.
        self._coordinator.events.close()
        super().handle_exit(sig, frame)
