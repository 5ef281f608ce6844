"""The dryad .deb: built on x86 from this tree, lintian clean, installed into a
throw-away trixie rootfs, its units verified, its commands run, purged cleanly."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.image_build.commands import IMAGE_BUILD, chroot, install_deb, run

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

UNITS = ("dryad.service", "dryad-seed.service")


def _depends(deb: Path) -> list[str]:
    field = run(["dpkg-deb", "--field", deb, "Depends"]).stdout
    return [re.split(r"[\s(]", dep.strip())[0] for dep in field.split(",")]


def test_control_fields(deb: Path) -> None:
    fields = run(["dpkg-deb", "--field", deb, "Package", "Architecture"]).stdout
    assert "Package: dryad" in fields
    assert "Architecture: all" in fields
    listing = run(["dpkg-deb", "--info", deb, "conffiles"]).stdout
    assert listing.split() == ["/etc/boruta/dryad.toml"]


def test_contents(deb: Path) -> None:
    listing = run(["dpkg-deb", "--contents", deb]).stdout
    for path in (
        "./usr/bin/dryad",
        "./usr/bin/stm",
        "./usr/bin/fota",
        "./usr/sbin/dryad-seed",
        "./usr/lib/systemd/system/dryad.service",
        "./usr/lib/udev/rules.d/60-dryad.rules",
        "./usr/lib/sysusers.d/dryad.conf",
        "./usr/lib/dryad/python/dryad/cli.py",
        "./usr/lib/dryad/python/hardware/muxpi.py",
        "./usr/lib/dryad/python/coordinator/wire/__init__.py",
        "./usr/lib/dryad/python/coordinator/wire/methods.py",
        "./usr/lib/dryad/wheels/gpiozero-2.0.1.post3-py3-none-any.whl",
        "./usr/lib/dryad/wheels/anyio-4.11.0-py3-none-any.whl",
    ):
        assert path in listing, path
    # Only the wire package of the coordinator: the dryad must not drag the service in.
    assert "./usr/lib/dryad/python/coordinator/service/" not in listing
    assert "__pycache__" not in listing
    assert re.search(r"^-rw-r--r-- root/root .* ./etc/boruta/dryad.toml$", listing, re.M)


def test_reproducible(deb: Path, build_env: dict[str, str], tmp_path: Path) -> None:
    """Two builds of one commit give the same bytes (clamped mtimes, root owners)."""
    again = run(
        [IMAGE_BUILD / "build-deb.sh"], env={**build_env, "BORUTA_IMAGE_OUT": str(tmp_path)}
    )
    assert Path(again.stdout.strip()).read_bytes() == deb.read_bytes()


@pytest.mark.parametrize("umask", [0o077, 0o027])
def test_same_package_under_any_umask(
    deb: Path, build_env: dict[str, str], tmp_path: Path, umask: int
) -> None:
    """A technician's restrictive umask neither breaks the build (dpkg-deb refuses a
    DEBIAN directory that is not 0755-0775) nor changes a byte of the package."""
    again = run(
        [IMAGE_BUILD / "build-deb.sh"],
        env={**build_env, "BORUTA_IMAGE_OUT": str(tmp_path / "out")},
        preexec_fn=lambda: os.umask(umask),
    )
    assert Path(again.stdout.strip()).read_bytes() == deb.read_bytes()


def test_lintian_clean(deb: Path) -> None:
    """No error, warning, info or pedantic tag that is not overridden with a reason."""
    proc = run(
        ["lintian", "--allow-root", "--pedantic", "-I", "--fail-on", "error,warning,info,pedantic",
         deb],
        check=False,
    )  # fmt: skip
    tags = [line for line in proc.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr


def test_depends_are_in_the_rootfs_lists(deb: Path, amd64_rootfs_tar: Path) -> None:
    """Installing the .deb into a cached rootfs needs no network: its Depends are
    named in both package lists, or installed with them (see the manifest)."""
    manifest = {
        line.split("\t")[0]
        for line in Path(f"{amd64_rootfs_tar}.manifest").read_text().splitlines()
    }
    for name in ("packages-armhf.list", "packages-test-amd64.list"):
        listed = {
            line.strip()
            for line in (IMAGE_BUILD / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        missing = set(_depends(deb)) - listed - manifest
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_installs_and_runs(deb: Path, rootfs: Path) -> None:
    install_deb(rootfs, deb)
    status = chroot(rootfs, "dpkg-query", "-W", "-f=${Status}", "dryad").stdout
    assert status == "install ok installed"
    # The venv made by postinst: the wheels before Debian's gpiozero 1.6 and anyio 4.8.
    probe = chroot(
        rootfs,
        "/usr/lib/dryad/venv/bin/python3",
        "-c",
        "import importlib.metadata as m, anyio, gpiozero, dryad.cli, hardware.pins;"
        "from anyio.abc import SocketListener; SocketListener.from_socket;"
        "print(m.version('gpiozero'), gpiozero.__file__);"
        "print(m.version('anyio'), anyio.__file__)",
    ).stdout.splitlines()
    assert probe[0].startswith("2.0.1.post3 /usr/lib/dryad/venv/"), probe
    assert probe[1].startswith("4.11.0 /usr/lib/dryad/venv/"), probe
    assert chroot(rootfs, "dryad", "--version").stdout.strip() == "dryad 0.3.0"
    assert "Usage of stm" in chroot(rootfs, "stm", "-h", check=False).stderr
    assert "Usage of fota" in chroot(rootfs, "fota", "-h", check=False).stderr
    assert "dryad-seed" in chroot(rootfs, "dryad-seed", "--help").stdout
    # A bad configuration is exit 2, which the unit does not restart.
    bad = chroot(rootfs, "dryad", "--config", "/nonexistent.toml", check=False)
    assert bad.returncode == 2, bad.stderr
    # The groups from sysusers.d, the state directory, the unit enabled.
    assert chroot(rootfs, "getent", "group", "stm").stdout.startswith("stm:")
    assert chroot(rootfs, "getent", "group", "gpio").stdout.startswith("gpio:")
    assert (rootfs / "var/lib/boruta-dryad").stat().st_mode & 0o777 == 0o700
    for unit in UNITS:
        assert (rootfs / "etc/systemd/system/multi-user.target.wants" / unit).is_symlink()


def test_units_verify(deb: Path, rootfs: Path) -> None:
    install_deb(rootfs, deb)
    # --man=no: the throw-away rootfs has no man-db to resolve Documentation=man:...
    proc = chroot(rootfs, "systemd-analyze", "verify", "--man=no", *UNITS, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    unit = (rootfs / "usr/lib/systemd/system/dryad.service").read_text()
    assert "Restart=on-failure" in unit
    assert "RestartPreventExitStatus=2" in unit
    assert "ExecStart=/usr/bin/dryad --config /etc/boruta/dryad.toml" in unit
    # The dryad notifies (dryad.systemd) and feeds the watchdog from its event loop.
    assert "Type=notify" in unit
    assert "WatchdogSec=60" in unit


def test_udev_rules_verify(deb: Path, rootfs: Path) -> None:
    install_deb(rootfs, deb)
    proc = chroot(rootfs, "udevadm", "verify", "/usr/lib/udev/rules.d/60-dryad.rules")
    assert "Success" in proc.stdout + proc.stderr or proc.returncode == 0


def test_purge_removes_what_postinst_made(deb: Path, rootfs: Path) -> None:
    install_deb(rootfs, deb)
    chroot(rootfs, "dpkg", "--purge", "dryad")
    assert not (rootfs / "usr/lib/dryad").exists()
    assert not (rootfs / "var/lib/boruta-dryad").exists()
    assert not (rootfs / "etc/boruta/dryad.toml").exists()
    left = subprocess.run(
        ["find", rootfs / "etc/systemd", "-name", "dryad*"], capture_output=True, text=True
    ).stdout
    assert not left.strip(), left
