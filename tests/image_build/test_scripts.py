"""The image-build shell scripts: shellcheck-clean, strict mode."""

from __future__ import annotations

from pathlib import Path

from tests.image_build.commands import IMAGE_BUILD, REPO, run


def _scripts() -> list[Path]:
    found = []
    for path in sorted(IMAGE_BUILD.rglob("*")):
        if "out" in path.relative_to(IMAGE_BUILD).parts or not path.is_file():
            continue
        head = path.read_bytes()[:64]
        if path.suffix == ".sh" or head.startswith((b"#!/bin/sh", b"#!/usr/bin/env bash")):
            found.append(path)
    return found


def test_there_are_scripts() -> None:
    names = {p.name for p in _scripts()}
    assert {"build-deb.sh", "build-image.sh", "rootfs.sh", "firstboot", "postinst"} <= names


def test_shellcheck_clean() -> None:
    run(["shellcheck", "-x", *[p.relative_to(REPO) for p in _scripts()]], cwd=REPO)


def test_strict_mode() -> None:
    """bash scripts stop at the first error, unset variable or failed pipe stage;
    POSIX sh ones (on the board, no pipefail in dash) at least at errors and unset."""
    for path in _scripts():
        text = path.read_text()
        if path.name == "lib.sh":
            continue  # sourced by the others, which set the mode
        if text.startswith("#!/usr/bin/env bash"):
            assert "set -euo pipefail" in text, path
        elif "exec " not in text.splitlines()[-1]:  # one-line wrappers only exec
            assert "set -eu" in text or "set -e\n" in text, path
