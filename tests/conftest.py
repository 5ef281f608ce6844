"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # asyncssh needs asyncio, so the whole suite runs on it.
    return "asyncio"
