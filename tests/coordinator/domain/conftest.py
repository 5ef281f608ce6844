"""Fixtures of the domain-core tests: a fake clock standing at a known instant."""

from __future__ import annotations

import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.requests import RequestPolicy
from tests.coordinator.domain.builders import T0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def policy() -> RequestPolicy:
    """The defaults: one-hour jobs, prolonged up to 24 hours in total."""
    return RequestPolicy()
