"""Commands of the image-build tests: script paths, and runs that show output on failure."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"


def run(
    args: Sequence[str | Path], *, timeout: float = 1800, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; a failure shows the output."""
    proc: subprocess.CompletedProcess[str] = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def chroot(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["chroot", root, *args], check=check, timeout=600)


def install_deb(root: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(deb, root / "tmp" / deb.name)
    return chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
