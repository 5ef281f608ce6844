"""Fixtures and hooks shared by every test package; the app harness plugin is loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

# Registered once, here, so that its fixtures (farm, settings, template) reach every folder.
pytest_plugins = ["tests.plugins.app_harness"]

TESTS = Path(__file__).parent
# Every test in these folders is slow: real processes, or images built and booted.
SLOW_FOLDERS = ("e2e", "image_build")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(TESTS):
            if item.path.relative_to(TESTS).parts[0] in SLOW_FOLDERS:
                item.add_marker(pytest.mark.slow)


@pytest.fixture
def anyio_backend() -> str:
    # asyncssh needs asyncio, so the whole suite runs on it.
    return "asyncio"
