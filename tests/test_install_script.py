"""scripts/install.sh: what --farm installs into .venv, what the full install adds, stamps.

Run in a copy of the script beside a fake .venv whose pip records its arguments, with an
apt-get (and sudo) on PATH that only record theirs: nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """scripts/install.sh and pyproject.toml, and a .venv whose pip only writes a log."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/install.sh", tmp_path / "scripts/install.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for tool, where in (("pip", bin_dir), ("apt-get", fakes), ("sudo", fakes)):
        (where / tool).write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/{tool}.log\n')
        (where / tool).chmod(0o755)
    return tmp_path


def install(repo: Path, *args: str) -> list[str]:
    """Run install.sh; the pip commands it ran (this run only)."""
    log = repo / "pip.log"
    log.unlink(missing_ok=True)
    path = f"{repo / 'fakes'}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", str(repo / "scripts/install.sh"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines() if log.exists() else []


TEST_ONLY = (
    "postgresql",
    "chromium",
    "qemu",
    "mmdebstrap",
    "wrk",
    "shellcheck",
    "lintian",
    "haproxy",
)


def test_the_farm_gets_the_coordinator_and_dryad_only(repo: Path) -> None:
    assert install(repo, "--farm") == ["install -q --upgrade pip", "install -q -e .[dryad]"]
    apt = (repo / "apt-get.log").read_text() if (repo / "apt-get.log").exists() else ""
    assert not [name for name in TEST_ONLY if name in apt], apt
    assert install(repo, "--farm") == []  # stamped: nothing to do the second time
    stamps = sorted(p.name for p in (repo / ".venv").glob(".installed-*"))
    assert len(stamps) == 1 and stamps[0].startswith(".installed-farm-")


def test_the_full_install_adds_the_tools_and_serves_the_farm(repo: Path) -> None:
    install(repo, "--farm")
    assert install(repo) == ["install -q --upgrade pip", "install -q -e .[dev]"]
    assert install(repo) == []
    assert install(repo, "--farm") == []  # a full install is more than the farm needs
    stamps = [p.name for p in (repo / ".venv").glob(".installed-*")]
    assert len(stamps) == 1 and stamps[0].startswith(".installed-full-")


def test_a_changed_pyproject_installs_again(repo: Path) -> None:
    install(repo, "--farm")
    with (repo / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert install(repo, "--farm") == ["install -q --upgrade pip", "install -q -e .[dryad]"]


def test_an_unknown_option_is_a_usage_error(repo: Path) -> None:
    done = subprocess.run(
        ["bash", str(repo / "scripts/install.sh"), "--everything"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.endswith("install.sh [--farm]\n")
    assert not (repo / "pip.log").exists()
