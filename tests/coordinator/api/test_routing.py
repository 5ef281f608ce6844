"""``clean_path``: Go's ``path.Clean`` as the original's router applies it."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, strategies as st

from coordinator.api.routing import clean_path, is_clean

paths = st.lists(st.sampled_from(["", ".", "..", "api", "v1", "reqs", "1", "é"]), max_size=8).map(
    lambda parts: "/" + "/".join(parts)
)


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("//api/v1//version", "/api/v1/version"),
        ("/api/v1/./workers/../reqs/list", "/api/v1/reqs/list"),
        ("/../../api/v1/version", "/api/v1/version"),  # never above the root
        ("/api/v1/reqs/", "/api/v1/reqs"),
        ("/", "/"),
        ("//", "/"),
    ],
)
def test_clean_path_examples(path: str, clean: str) -> None:
    assert clean_path(path) == clean


@given(paths)
def test_clean_path_agrees_with_posix_normpath_from_a_single_root(path: str) -> None:
    # normpath keeps exactly two leading slashes (POSIX allows it); Go's Clean does not.
    assert clean_path(path) == posixpath.normpath("/" + path.lstrip("/"))


@given(paths)
def test_a_clean_path_is_clean_and_cleaning_it_changes_nothing(path: str) -> None:
    cleaned = clean_path(path)
    assert is_clean(cleaned) and clean_path(cleaned) == cleaned
    # A trailing slash is the other rule's business, but "//" is the root made unclean.
    assert is_clean(cleaned + "/") == (cleaned != "/")
    assert is_clean(path) == (path == cleaned or (cleaned != "/" and path == cleaned + "/"))
