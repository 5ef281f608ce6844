"""Fixtures for the client and CLI tests: clients of the app farm, and a thread bridge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from coordinator.client import AsyncClient
from tests.coordinator.client.cli_runner import Cli
from tests.coordinator.client.thread_bridge import ThreadBridge
from tests.plugins.app_harness import AppFarm


@pytest.fixture
async def alice(farm: AppFarm) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        "http://boruta", farm.tokens["alice"], transport=httpx.ASGITransport(farm.app)
    ) as client:
        yield client


@pytest.fixture
async def root(farm: AppFarm) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        "http://boruta", farm.tokens["root"], transport=httpx.ASGITransport(farm.app)
    ) as client:
        yield client


@pytest.fixture
def bridge(farm: AppFarm) -> ThreadBridge:
    return ThreadBridge(farm.app)


@pytest.fixture
def cli(
    farm: AppFarm,
    bridge: ThreadBridge,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BORUTA_URL", raising=False)
    monkeypatch.delenv("BORUTA_TOKEN", raising=False)
    return Cli(farm, bridge, capsys)
