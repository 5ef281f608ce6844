"""``boruta`` as a real process against the app served on a loopback port: Ctrl-C (SIGINT)
while a reservation waits closes the request."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
import uvicorn
from anyio.streams.text import TextReceiveStream

from coordinator.domain.ids import RequestID
from coordinator.domain.states import RequestState
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url(farm: AppFarm) -> AsyncIterator[str]:
    """The farm's app on a port bound before serving, so clients may dial at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(farm.app, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
    sock.close()


@pytest.mark.slow
async def test_ctrl_c_while_waiting_closes_the_request(farm: AppFarm, url: str) -> None:
    await farm.parked_worker()  # the request can wait: a worker with its caps exists
    env = {**os.environ, "BORUTA_URL": url, "BORUTA_TOKEN": farm.tokens["alice"]}
    command = [sys.executable, "-m", "coordinator.boruta_cli", "reserve", "--caps", "board=rpi4"]
    async with await anyio.open_process([*command, "--wait"], env=env) as process:
        assert process.stderr is not None
        seen = ""
        with anyio.fail_after(60):
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
                if "WAITING" in seen:
                    break
            process.send_signal(signal.SIGINT)
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
            code = await process.wait()
    assert code == 130, seen
    assert "interrupted: request 1 closed" in seen and "Traceback" not in seen
    assert (await farm.service.get_request(RequestID(1))).state is RequestState.CANCELLED
