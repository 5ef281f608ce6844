"""Fixtures for the client and CLI tests: clients of the app farm, and a thread bridge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from coordinator.client import AsyncClient
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
