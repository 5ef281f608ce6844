"""Strict host key checking with real parts: Debian's sshd and ssh, ``boruta reserve --ssh``
and ``boruta ssh-config``, a coordinator, a simulated dryad reporting the sshd's key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.coordinators import Coordinator
from tests.e2e.process_farm import ProcessFarm, eventually
from tests.e2e.test_job_access import Sshd

pytestmark = pytest.mark.e2e


def _farm(
    tmp: Path, coordinators: list[Coordinator], user: str, sshd: Sshd, keys: Path
) -> ProcessFarm:
    """A coordinator and one ``rpi4`` dryad for ``sshd`` that reports the keys ``keys``."""
    farm = ProcessFarm(tmp, coordinators, f'job_username = "{user}"\n')
    farm.dryad(1, "rpi4", sshd.port, user, host_keys=str(keys))
    farm.idle("rpi4")
    return farm


def _state(farm: ProcessFarm, rid: int) -> str:
    with farm.http() as http:
        state: str = http.get(f"/api/v1/reqs/{rid}").json()["State"]
    return state


def _boruta(
    farm: ProcessFarm, tmp: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BORUTA_URL": farm.coordinator.url,
        "BORUTA_TOKEN": farm.token,
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "coordinator.boruta_cli", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_reserve_ssh_and_ssh_config_check_the_boards_real_key(
    tmp_path: Path,
    coordinators: list[Coordinator],
    user: str,
    sshd: Sshd,
) -> None:
    farm = _farm(tmp_path, coordinators, user, sshd, tmp_path / "sshd" / "host_ed25519.pub")
    try:
        shell = _boruta(farm, tmp_path, "reserve", "--caps", "device_type=rpi4", "--ssh",
                        stdin="id -un\n")  # fmt: skip
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout == f"{user}\n" and "request 1 closed" in shell.stderr
        assert "vouches for no host key" not in shell.stderr
        # The Host block that ssh-config prints logs in with strict checking too.
        assert _boruta(farm, tmp_path, "reserve", "--caps", "device_type=rpi4").returncode == 0
        eventually(lambda: _state(farm, 2) == "IN PROGRESS")  # once the board is prepared
        block = _boruta(farm, tmp_path, "ssh-config", "2")
        assert block.returncode == 0 and "StrictHostKeyChecking yes" in block.stdout
        (tmp_path / "ssh.conf").write_text(block.stdout)
        login = subprocess.run(
            ["ssh", "-F", str(tmp_path / "ssh.conf"), "-o", "BatchMode=yes", "boruta-2", "id -un"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (login.returncode, login.stdout) == (0, f"{user}\n"), login.stderr
    finally:
        farm.stop_dryads()


def test_a_board_presenting_another_host_key_is_refused_by_ssh(
    tmp_path: Path,
    coordinators: list[Coordinator],
    user: str,
    sshd: Sshd,
) -> None:
    """The dryad vouches for a key the sshd does not hold, as when someone on the path
    answers in the board's place: ssh refuses before it sends anything."""
    other = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    farm = _farm(tmp_path, coordinators, user, sshd, other.with_suffix(".pub"))
    try:
        shell = _boruta(farm, tmp_path, "reserve", "--caps", "device_type=rpi4", "--ssh",
                        stdin="id -un\n")  # fmt: skip
        assert shell.returncode == 255 and shell.stdout == ""
        assert "Host key verification failed" in shell.stderr
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in shell.stderr
    finally:
        farm.stop_dryads()
