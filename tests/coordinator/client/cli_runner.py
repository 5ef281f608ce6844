"""``Cli``: the ``boruta`` command's ``main`` in a worker thread, onto the test's app."""

from __future__ import annotations

import anyio
import pytest

from coordinator.boruta_cli import main
from tests.coordinator.client.thread_bridge import ThreadBridge
from tests.plugins.app_harness import AppFarm


class Cli:
    """Runs ``main`` in a worker thread and returns (exit code, stdout, stderr)."""

    def __init__(self, farm: AppFarm, bridge: ThreadBridge, capsys: pytest.CaptureFixture[str]):
        self.farm, self.bridge, self.capsys = farm, bridge, capsys

    async def __call__(self, *args: str, as_: str | None = "alice") -> tuple[int, str, str]:
        token = ["--token", self.farm.tokens[as_]] if as_ else []
        argv = ["--url", "http://boruta", *token, *args]
        code = await anyio.to_thread.run_sync(lambda: main(argv, transport=self.bridge))
        out, err = self.capsys.readouterr()
        return code, out, err
