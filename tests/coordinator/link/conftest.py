"""The link tests' ``farm``: a LinkFarm on 127.0.0.1 port 0 (the test dryads: dryads.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import RecordingTunnels
from tests.coordinator.link.link_farm import GRACE, LinkFarm


@pytest.fixture
async def farm(store: SqlStore, clock: FakeClock, tmp_path: Path) -> AsyncIterator[LinkFarm]:
    link = DryadLink(store, clock)
    service = Service(
        store, link, RecordingTunnels(), clock, keys=KeyPool(2, processes=False), link_grace=GRACE
    )
    link.service = service
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        _, port = await tg.start(LinkServer(config, store, link).run)
        yield LinkFarm(port, service, link, store, clock, config.host_key)
        tg.cancel_scope.cancel()
