"""Two coordinator processes on one host with overlapping tunnel ranges: the second refuses."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.coordinators import READY, Coordinator, free_range, start
from tests.e2e.process_farm import eventually
from tests.e2e.proxy import CuttableProxy
from tests.pg_cluster import PgCluster, private_cluster

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


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with private_cluster() as pg:
        yield pg


@pytest.mark.postgres
def test_a_standby_on_the_same_host_and_range_takes_over_once_the_old_one_steps_down(
    tmp_path: Path, cluster: PgCluster
) -> None:
    """One farm's coordinators may share a range on one host (only the serving one binds
    ports): the one that takes over waits for its predecessor, cut off from the database
    but still serving, to step down, and then serves; it does not exit."""
    low, _ = free_range("127.0.0.1", 10)
    name = cluster.create_database()
    db = cluster.url(name)
    proxy = CuttableProxy(("127.0.0.1", cluster.port))
    try:
        # a reaches the database through the proxy, and serves on for lease_grace once cut.
        through = db.replace(f":{cluster.port}/", f":{proxy.port}/")
        a = _spawn_pg(through, tmp_path, "a", low, "lease_grace = 3\n")
        b: subprocess.Popen[bytes] | None = None
        try:
            eventually(lambda: READY.search(_log(tmp_path, "a")), 60)
            b = _spawn_pg(db, tmp_path, "b", low)  # the same range on the same address
            eventually(lambda: b"standby: " in _log(tmp_path, "b"), 60)
            proxy.hold()  # a's lock goes with its session; a cannot tell for 3 s
            eventually(lambda: b"now serving" in _log(tmp_path, "b"), 60)
            eventually(lambda: READY.search(_log(tmp_path, "b")), 60)
            b_log = _log(tmp_path, "b").decode()
            assert re.search(
                rf"tunnel_ports {low}-{low + 9} \(on 127.0.0.1\) overlap {low}-{low + 9} "
                rf"\(on 127.0.0.1\) of another coordinator on this host \(pid {a.pid}\): give "
                r"each coordinator its own range; waiting up to \d+ s for it to stop serving",
                b_log,
            ), b_log
            assert b"standing by for " in _log(tmp_path, "a")
            assert a.poll() is None and b.poll() is None
        finally:
            for process in (a, b):
                if process is not None:
                    process.terminate()
                    process.wait(30)
    finally:
        proxy.close()
        cluster.drop_database(name)


def _spawn_pg(db: str, tmp: Path, name: str, low: int, more: str = "") -> subprocess.Popen[bytes]:
    """``serve`` on PostgreSQL with the range ``low``.., the farm's one link host key, and
    ``more`` settings."""
    extra = f'link_host_key = "{tmp / "link_host_key"}"\n{more}'
    command = [sys.executable, "-m", "coordinator", "--db", db]
    command += ["--config", str(config(tmp, name, low, low + 9, extra)), "serve"]
    command += ["--http", "127.0.0.1:0", "--link", "127.0.0.1:0"]
    with (tmp / f"{name}.log").open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


def _log(tmp: Path, name: str) -> bytes:
    return (tmp / f"{name}.log").read_bytes()
