"""The open-file limit: raised to the hard limit at start, and shared out."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.httpd.limits import OpenFiles, raise_open_files


@pytest.fixture
def restored_limit() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield soft, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_hard_one_and_logged(
    restored_limit: tuple[int, int], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    _, hard = restored_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    caplog.set_level("INFO")
    files = raise_open_files(tmp_path / "nr_open")
    expected = hard if hard != resource.RLIM_INFINITY else 256  # no nr_open file: keep
    assert files.soft == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert f"open files: limit raised from 256 to {hard}" in caplog.text or expected == 256


def test_at_the_hard_limit_it_says_so(
    restored_limit: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = restored_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    caplog.set_level("INFO")
    assert raise_open_files().soft == hard
    assert f"open files: limit {hard} (the hard limit)" in caplog.text


@pytest.mark.parametrize(
    ("soft", "http", "batch"), [(1024, 768, 64), (256, 64, 64), (65536, 49152, 2048)]
)
def test_how_the_limit_is_shared_out(soft: int, http: int, batch: int) -> None:
    files = OpenFiles(soft, soft)
    assert (files.for_http, files.accept_batch) == (http, batch)
    assert files.for_http + 3 * files.accept_batch <= files.soft or files.soft < 512
