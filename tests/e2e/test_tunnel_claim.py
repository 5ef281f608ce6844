"""Two coordinator processes on one host with overlapping tunnel ranges: the second refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.coordinators import Coordinator, start
from tests.e2e.several import free_range

pytestmark = pytest.mark.e2e


def config(tmp: Path, name: str, first: int, last: int, extra: str = "") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f'tunnel_ports = "{first}-{last}"\ndialback = "127.0.0.1:0"\n{extra}')
    return path


def test_a_second_coordinator_with_an_overlapping_range_refuses_to_start(
    tmp_path: Path, coordinators: list[Coordinator]
) -> None:
    low, _ = free_range("127.0.0.1", 20)
    first = start(
        tmp_path / "a.db", tmp_path / "a.log", "127.0.0.1:0",
        "--config", str(config(tmp_path, "a", low, low + 9)),
    )  # fmt: skip
    coordinators.append(first)

    # Another farm (its own SQLite file) whose range overlaps: one clear line, exit 1,
    # before it binds any port (no ready line).
    command = [sys.executable, "-m", "coordinator", "--db", str(tmp_path / "b.db")]
    command += ["--config", str(config(tmp_path, "b", low + 5, low + 14)), "serve"]
    command += ["--http", "127.0.0.1:0", "--link", "127.0.0.1:0"]
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1, second.stderr
    assert second.stderr.splitlines()[-1] == (
        f"boruta-coordinator: tunnel_ports {low + 5}-{low + 14} (on 127.0.0.1) overlap "
        f"{low}-{low + 9} (on 127.0.0.1) of another coordinator on this host "
        f"(pid {first.process.pid}): give each coordinator its own range"
    )
    assert "Traceback" not in second.stderr and "coordinator ready" not in second.stderr
    assert first.process.poll() is None

    # With a range of its own it runs beside the first; with tunnel_mode "none" it binds
    # no tunnel port, so it claims nothing and may keep the overlapping range.
    beside = start(
        tmp_path / "b.db", tmp_path / "b.log", "127.0.0.1:0",
        "--config", str(config(tmp_path, "b2", low + 10, low + 19)),
    )  # fmt: skip
    coordinators.append(beside)
    direct = start(
        tmp_path / "c.db", tmp_path / "c.log", "127.0.0.1:0",
        "--config", str(config(tmp_path, "c", low, low + 19, 'tunnel_mode = "none"\n')),
    )  # fmt: skip
    coordinators.append(direct)
    assert all(c.process.poll() is None for c in (first, beside, direct))

    # A coordinator that stopped released its claim: its range may be taken again.
    first.process.terminate()
    first.process.wait(20)  # uvicorn ends by raising SIGTERM again once it has stopped
    again = start(
        tmp_path / "d.db", tmp_path / "d.log", "127.0.0.1:0",
        "--config", str(config(tmp_path, "d", low, low + 9)),
    )  # fmt: skip
    coordinators.append(again)
