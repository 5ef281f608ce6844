"""Fixtures of the image-build tests: the dryad .deb, throw-away root filesystems and
the MuxPi SD image, each built once per session by the scripts in image-build/.

These tests need root (chroot, mke2fs of a root-owned tree), Debian's archive and
the packages scripts/install.sh adds for them (mmdebstrap, qemu-user-static,
qemu-system-arm, lintian, device-tree-compiler, mtools, ...). Slow steps are cached
under /var/cache/boruta-image-build between runs (BORUTA_IMAGE_CACHE overrides).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image_build.commands import IMAGE_BUILD, last_line, run


@pytest.fixture(scope="session")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's .deb and image go (not the developer's image-build/out)."""
    return tmp_path_factory.mktemp("image-out")


@pytest.fixture(scope="session")
def build_env(out_dir: Path) -> dict[str, str]:
    return {**os.environ, "BORUTA_IMAGE_OUT": str(out_dir)}


@pytest.fixture(scope="session")
def deb(build_env: dict[str, str]) -> Path:
    proc = run([IMAGE_BUILD / "build-deb.sh"], env=build_env, timeout=300)
    path = Path(last_line(proc.stdout))
    assert path.is_file(), proc.stdout
    return path


@pytest.fixture(scope="session")
def amd64_rootfs_tar(build_env: dict[str, str]) -> Path:
    """A trixie amd64 minbase with the .deb's Depends (cached after the first run)."""
    proc = run(
        [IMAGE_BUILD / "rootfs.sh", "amd64", "trixie", IMAGE_BUILD / "packages-test-amd64.list"],
        env=build_env,
    )
    return Path(last_line(proc.stdout))


@pytest.fixture
def rootfs(amd64_rootfs_tar: Path) -> Iterator[Path]:
    """A fresh throw-away copy of the amd64 rootfs, for one test."""
    root = Path(tempfile.mkdtemp(prefix="dryad-rootfs-", dir="/var/tmp"))
    try:
        with tarfile.open(amd64_rootfs_tar) as tar:
            tar.extractall(root, filter="fully_trusted")  # a root filesystem: devices, owners
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def image(build_env: dict[str, str]) -> Path:
    """The raw MuxPi SD image, built by the README's command (cached rootfs after the
    first run), with its .xz, .bmap, manifest and SHA256SUMS beside it."""
    proc = run([IMAGE_BUILD / "build-image.sh"], env=build_env, timeout=3600)
    path = Path(last_line(proc.stdout))
    assert path.is_file(), proc.stdout + proc.stderr
    return path
