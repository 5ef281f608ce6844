"""A real SQLite store whose commits wait at a gate and can be made to fail."""

from __future__ import annotations

import threading
from typing import Any

from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql import SqlStore


class GatedStore:
    """Every commit waits for ``gate``; the calls numbered in ``refuse`` are refused."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.commits: list[Changes] = []  # those that went through
        self.calls = 0
        self.refuse: set[int] = set()  # the numbers of the calls to refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, changes: Changes) -> list[Numbered]:
        if not self.gate.wait(10):
            raise AssertionError("the test never opened the gate")
        self.calls += 1
        if self.calls in self.refuse:
            raise StoreUnavailable("database or disk is full")
        numbered = self.inner.commit(changes)
        self.commits.append(changes)
        return numbered
