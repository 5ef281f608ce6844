"""``atomic_write``: whole files with the asked mode, no temporary left, old file kept on error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hardware.files import atomic_write


def test_bytes_are_written_whole_with_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "key"
    atomic_write(target, b"secret", 0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_writer_function_gets_a_path_with_the_same_suffix(tmp_path: Path) -> None:
    seen: list[str] = []

    def write(path: Path) -> None:
        seen.append(path.suffix)
        path.write_text("drawn")

    atomic_write(tmp_path / "oled.png", write, 0o644)
    assert seen == [".png"] and (tmp_path / "oled.png").read_text() == "drawn"


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
