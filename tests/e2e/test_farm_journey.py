"""A new user's first hour: scripts/farm.sh, ``boruta reserve --ssh``, stm inside, release.

The farm runs as the README says, in the background, on free ports and in a temporary
folder, with this test's interpreter for its tools (BORUTA_BIN: nothing is installed).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.coordinators import free_port
from tests.e2e.process_farm import eventually

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
READY = "Ctrl-C stops the farm."

pytestmark = pytest.mark.timeout(300)


def free_range(size: int) -> str:
    """FIRST-LAST: ``size`` loopback ports nobody listens on now."""
    while True:
        first = free_port()
        if first + size > 65535:
            continue
        try:
            for port in range(first, first + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return f"{first}-{first + size - 1}"


@dataclass
class Farm:
    folder: Path
    env: dict[str, str]
    url: str
    process: subprocess.Popen[str]
    output: Path

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )

    def boruta(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "boruta"), *args)

    def board(self, n: int) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.folder / f"dryad-{n}/board.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def panel(self, uuid: str) -> dict[str, Any]:
        token = (self.folder / "admin.token").read_text().strip()
        answer = httpx.get(
            f"{self.url}/api/v1/workers/{uuid}/panel",
            headers={"Authorization": f"Bearer {token}"},
        )
        return answer.json() if answer.status_code == 200 else {}


def start_farm(tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    with (tmp / "farm.out").open("a") as out:
        return subprocess.Popen(
            ["bash", str(ROOT / "scripts/farm.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # its own group: stopped as a whole at the end
        )


def stop_farm(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # farm.sh stops its coordinator and dryads
        process.wait(60)


def wait_ready(farm: Farm, times: int = 1) -> str:
    def ready() -> str:
        text = farm.output.read_text()
        assert farm.process.poll() is None, text
        return text if text.count(READY) >= times else ""

    text: str = eventually(ready, 240)
    return text


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder: the boards' control sockets live in it (AF_UNIX paths ≤ 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="farm-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def farm(short_tmp: Path) -> Iterator[Farm]:
    tmp_path = short_tmp
    http = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "BORUTA_BIN": str(BIN),
        "BORUTA_FARM_DIR": str(tmp_path / "farm"),
        "BORUTA_HTTP": http,
        "BORUTA_LINK": f"127.0.0.1:{free_port()}",
        "BORUTA_TUNNEL_PORTS": free_range(4),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("BORUTA_URL", "BORUTA_TOKEN"):
        env.pop(name, None)
    process = start_farm(tmp_path, env)
    f = Farm(tmp_path / "farm", env, f"http://{http}", process, tmp_path / "farm.out")
    try:
        yield f
    finally:
        stop_farm(f.process)


class Lines:
    """The lines of a stream, read in a thread, waited for with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put("")

    def until(self, wanted: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            self.seen.append(line)
            if not line:
                raise AssertionError(f"ended before {wanted!r}: {self.seen}")
            if line.strip() == wanted:
                return


def ssh_block(text: str) -> dict[str, str]:
    return dict(line.strip().split(None, 1) for line in text.splitlines()[1:] if line.strip())


def test_the_first_hour(farm: Farm) -> None:
    banner = wait_ready(farm)
    # It says how to use boruta (its PATH line), where the dashboard is, and uses the CLI.
    assert f'export PATH="{BIN}:$PATH"' in banner
    assert f"Dashboard: {farm.url}/" in banner
    assert "boruta reserve --caps device_type=rpi4 --ssh" in banner
    assert "curl" not in banner
    assert re.search(r"IDLE +up .*device_type=rpi4", banner), banner

    # A second farm.sh on the same folder refuses in one line and touches nothing.
    log = farm.folder / "coordinator.log"
    before = log.stat()
    second = farm.run("bash", str(ROOT / "scripts/farm.sh"))
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.count("\n") == 1
    assert second.stderr.startswith(f"farm.sh: a farm already runs in {farm.folder}")
    after = log.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    # The board's healthchecks pass, its SSH server included (an hourly check must not
    # take the farm down).
    uuid = (farm.folder / "dryad-1/state/uuid").read_text().strip()
    health = farm.boruta("admin", "healthcheck", uuid)
    assert health.returncode == 0, health.stdout
    assert re.search(r"^sshd: ok \(127\.0\.0\.1:\d+: SSH-2\.0-", health.stdout, re.M)

    # boruta finds the farm through the config farm.sh wrote; ssh is the real OpenSSH.
    started = time.monotonic()
    with subprocess.Popen(
        [str(BIN / "boruta"), "reserve", "--caps", "device_type=rpi4", "--ssh"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=farm.env,
    ) as reserve:
        assert reserve.stdin is not None and reserve.stdout and reserve.stderr
        out = Lines(reserve.stdout)
        try:
            reserve.stdin.write('echo "in $PWD"\n')
            reserve.stdin.flush()
            out.until(f"in {farm.folder}/dryad-1/home")
            print(f"reserve --ssh to a shell: {time.monotonic() - started:.1f} s")
            reserve.stdin.write("stm -dut && echo switched\n")
            reserve.stdin.flush()
            out.until("switched")
            assert farm.board(1).get("mux") == "dut"
            # The dashboard's mirror shows the job: the board's LEDs are RUNNING's blue.
            eventually(lambda: farm.panel(uuid).get("leds") == [[0, 0, 128], [0, 0, 128]])
            config = farm.boruta("ssh-config", "1")
            assert config.returncode == 0, config.stderr
            host = ssh_block(config.stdout)
            reserve.stdin.write("stm -ts && stm -tick -m 100ms && echo done\nexit\n")
            reserve.stdin.close()
            out.until("done")
            assert farm.board(1).get("mux") == "ts"
            assert reserve.wait(60) == 0
            assert "request 1 closed" in reserve.stderr.read()
        finally:
            reserve.kill()

    # The key of the ended job opens nothing: not the tunnel, not the board's own sshd.
    board_port = (farm.folder / "dryad-1/state/sim_ssh_port").read_text().strip()
    for port in (host["Port"], board_port):
        login = farm.run(
            "ssh", "-F", "/dev/null", "-i", host["IdentityFile"], "-p", port,
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            f"{host['User']}@127.0.0.1", "true",
        )  # fmt: skip
        assert login.returncode == 255, login
    assert "Permission denied (publickey)" in login.stderr


def test_a_restart_keeps_running_jobs_and_says_so(farm: Farm) -> None:
    wait_ready(farm)
    held = farm.boruta("reserve", "--caps", "device_type=odroid-xu4", "--wait")
    assert held.returncode == 0, held.stderr
    config = farm.boruta("ssh-config", "1")
    (farm.folder.parent / "ssh.conf").write_text(config.stdout)

    stop_farm(farm.process)
    farm.process = start_farm(farm.folder.parent, farm.env)
    banner = wait_ready(farm, times=2).split(READY)[1]
    seconds = float(re.search(r"ready in ([0-9.]+) s", banner)[1])  # type: ignore[index]
    print(f"restart with a running job: ready in {seconds} s")
    # The banner tells each board's state as it is, not "all IDLE".
    assert re.search(r"RUNNING +up .*device_type=odroid-xu4", banner), banner
    assert re.search(r"IDLE +up .*device_type=rpi4", banner), banner

    # Every board shows its state again: the boot screen is replaced at registration.
    uuids = {n: (farm.folder / f"dryad-{n}/state/uuid").read_text().strip() for n in (1, 2, 3)}
    green, blue = [[0, 128, 0], [0, 128, 0]], [[0, 0, 128], [0, 0, 128]]
    for n, leds in ((1, green), (2, blue), (3, green)):

        def shown(n: int = n, leds: list[list[int]] = leds) -> bool:
            """the board and the dashboard's mirror show the board's state"""
            return farm.board(n).get("leds") == leds == farm.panel(uuids[n]).get("leds")

        eventually(shown)

    # The job's key still opens the board through its tunnel.
    login = farm.run(
        "ssh", "-F", str(farm.folder.parent / "ssh.conf"), "-o", "BatchMode=yes", "boruta-1",
        "stm -dut && echo on the board",
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert login.stdout == "on the board\n"
    assert farm.board(2).get("mux") == "dut"
