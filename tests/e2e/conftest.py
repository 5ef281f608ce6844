"""End-to-end fixtures: real coordinator processes, and farms of them with simulated dryads."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.coordinators import Coordinator
from tests.e2e.process_farm import ProcessFarm
from tests.e2e.test_job_access import Sshd, remove_user, start_sshd


@pytest.fixture
def coordinators(tmp_path: Path) -> Iterator[list[Coordinator]]:
    """Every coordinator a test starts; all killed at the end."""
    started: list[Coordinator] = []
    yield started
    for c in started:
        if c.process.poll() is None:
            c.process.terminate()  # a graceful stop, so the process can write its coverage
            c.process.wait(20)


@pytest.fixture
def farm(tmp_path: Path, coordinators: list[Coordinator]) -> Iterator[ProcessFarm]:
    f = ProcessFarm(tmp_path, coordinators)
    yield f
    f.stop_dryads()


@pytest.fixture
def patient_farm(tmp_path: Path, coordinators: list[Coordinator]) -> Iterator[ProcessFarm]:
    """A farm whose dryads have time to notice a restart and dial back (their back-off
    after a lost link is 1, 2, 4 … s), as the default grace of 60 s gives them."""
    f = ProcessFarm(tmp_path, coordinators, grace=60)
    yield f
    f.stop_dryads()


@pytest.fixture
def user() -> Iterator[str]:
    """A unique job user name; the user is removed at the end even when the test failed."""
    name = f"brt-e2e-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        remove_user(name)


@pytest.fixture
def sshd(tmp_path: Path, user: str) -> Iterator[Sshd]:
    """A real sshd that lets only ``user`` log in, stopped at the end."""
    started = start_sshd(tmp_path / "sshd", user)
    yield started
    started.stop()
