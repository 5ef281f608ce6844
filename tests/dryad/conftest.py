"""Fixtures of the dryad tests: a fake coordinator serving the link on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.dryad.link_doubles import FakeCoordinator, serve_coordinator


@pytest.fixture
async def coordinator() -> AsyncIterator[FakeCoordinator]:
    async with serve_coordinator(FakeCoordinator()) as coord:
        yield coord
