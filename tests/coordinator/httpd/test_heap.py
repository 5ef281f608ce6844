"""One malloc arena: threads started after ``limit_arenas`` share the main one."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from coordinator.httpd import heap

# Starts threads that allocate (ctypes calls malloc without the GIL), then has glibc list its
# arenas on stderr ("Arena 0:", "Arena 1:", ...).
PROGRAM = """
import ctypes, sys, threading
from coordinator.httpd.heap import limit_arenas
if sys.argv[1] == "limit":
    assert limit_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def churn():
    for _ in range(2000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()
"""


def _arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_threads_share_one_arena_once_limited() -> None:
    assert _arenas("default") > 1  # glibc's own way: an arena per thread
    assert _arenas("limit") == 1


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert heap.limit_arenas() is False
