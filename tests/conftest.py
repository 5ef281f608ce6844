"""Fixtures and hooks shared by every test package; the app harness plugin is loaded here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# No deadline: a loaded 2-core machine makes any example slow now and then. In CI (the CI
# variable set, as .ci/run does) the generated inputs are the same on every run, so a red
# build shows a regression, not a new draw; local runs keep exploring new inputs.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
