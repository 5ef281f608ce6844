"""Coordinator fixtures: a real SQLite store, a fake clock, recording dryads and tunnels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import RecordingDryads, RecordingTunnels


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "boruta.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqlStore]:
    s = SqlStore.open(db_path)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def dryads() -> RecordingDryads:
    return RecordingDryads()


@pytest.fixture
def tunnels() -> RecordingTunnels:
    return RecordingTunnels()


@pytest.fixture
async def service(
    store: SqlStore, clock: FakeClock, dryads: RecordingDryads, tunnels: RecordingTunnels
) -> AsyncIterator[Service]:
    svc = Service(store, dryads, tunnels, clock, keys=KeyPool(2, processes=False))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        yield svc
        tg.cancel_scope.cancel()
