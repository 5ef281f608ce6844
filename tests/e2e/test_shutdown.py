"""A coordinator stops cleanly on SIGTERM, even with a dashboard's event stream open."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.coordinators import run_cli, start

pytestmark = pytest.mark.e2e


def test_sigterm_ends_open_event_streams_and_stops(tmp_path: Path, coordinators) -> None:
    db = tmp_path / "farm.db"
    token = run_cli(db, "user", "add", "admin", "--admin").splitlines()[-1]
    coordinator = start(db, tmp_path / "coordinator.log")
    coordinators.append(coordinator)
    with (
        httpx.Client(base_url=coordinator.url, timeout=30) as http,
        http.stream("GET", "/api/v1/events", params={"token": token}) as stream,
    ):
        assert stream.status_code == 200
        coordinator.process.send_signal(signal.SIGTERM)
        try:
            # uvicorn re-raises the signal once it has shut down gracefully.
            assert coordinator.process.wait(20) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            pytest.fail("the coordinator hung on SIGTERM with an event stream open")
    assert "Application shutdown complete" in (tmp_path / "coordinator.log").read_text()
