"""``serve``'s server: the ``before_ready`` hook runs once it listens, before the ready line;
the event loop it runs on."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket

import anyio
import pytest
import uvicorn
import uvloop

from coordinator.assembly import Coordinator
from coordinator.httpd.guard import ConnectionGuard, ConnectionLimits
from coordinator.httpd.protocol import Timeouts, guarded
from coordinator.httpd.server import READY, _Server, loop_factory
from coordinator.settings import Settings, SettingsError
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_before_ready_runs_while_listening_and_before_the_ready_line(
    farm: AppFarm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator")
    coordinator: Coordinator = farm.app.state.coordinator
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    guard = ConnectionGuard(ConnectionLimits(16, 64))
    seen: list[str] = []
    done = anyio.Event()

    async def before_ready() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # it listens already
        writer.close()
        ready_said = any(r.msg == READY for r in caplog.records)
        seen.append(f"hook ran, ready line {'before' if ready_said else 'not yet'}")
        done.set()

    config = uvicorn.Config(
        coordinator.app,
        http=guarded(guard, Timeouts(5, 5)),
        lifespan="off",  # the harness runs the coordinator's lifespan already
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config, coordinator, guard, before_ready)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await done.wait()
                while not any(r.msg == READY for r in caplog.records):  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # the ready line follows the hook's return
            server.should_exit = True
    finally:
        sock.close()
        gc.unfreeze()  # serve freezes the heap after start-up: not this test process's
    assert seen == ["hook ran, ready line not yet"]


@pytest.mark.parametrize(
    ("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)]
)
def test_the_event_loop_setting_picks_the_loop_serve_runs_on(name: str, kind: type) -> None:
    loop = loop_factory(name)()
    try:
        assert isinstance(loop, kind)
        assert (name == "uvloop") == isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_an_unknown_event_loop_is_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="event_loop must be uvloop or asyncio, not 'trio'"):
        Settings(event_loop="trio").validate()
