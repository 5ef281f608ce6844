"""A coordinator that cannot start says why in one line, not in uvicorn's tracebacks.

Two failures are expected in a lab and have a reason to tell: the app's start (the
lifespan: a ``public_host`` that does not resolve, a database that cannot be reached)
and the HTTP port (taken by another program). uvicorn logs the first as a traceback and
ends both with ``sys.exit`` inside the server's task group, which Python prints as a
second one. Here the reason is found and raised on its own (``cli`` prints a
``BorutaError`` as one line); a failure that is no ``BorutaError`` (a bug) keeps its
traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from coordinator.errors import BorutaError, Unavailable

_TRACEBACK = "Traceback (most recent call last)"


class NotStarted(Exception):
    """The server did not start, for ``reason``."""

    def __init__(self, reason: BorutaError) -> None:
        super().__init__(reason.message)
        self.reason = reason


def first_known(exc: BaseException | None) -> BorutaError | None:
    """The first ``BorutaError`` in ``exc``, the groups it holds or what caused it."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, BorutaError):
            return item
        if isinstance(item, BaseExceptionGroup):
            todo.extend(item.exceptions)
        todo.extend((item.__cause__, item.__context__))
    return None


def why_not_started(exc: SystemExit, state: Any, host: str, port: int) -> BorutaError:
    """The reason uvicorn's start-up ended in ``exc``: what the app's start recorded in
    ``state.start_error`` (``api.app``), else the socket's error."""
    known = first_known(getattr(state, "start_error", None))
    if known is not None:
        return known
    cause = exc.__context__
    if isinstance(cause, OSError):
        why = os.strerror(cause.errno).lower() if cause.errno else str(cause)
        return Unavailable(f"cannot serve HTTP on {host}:{port}: {why}")
    return Unavailable(f"the HTTP server on {host}:{port} did not start (see the log above)")


def reason_in(group: BaseExceptionGroup[Any]) -> BorutaError | None:
    """The reason of a ``NotStarted`` in ``group``, if it holds one."""
    matched = group.subgroup(NotStarted)
    while matched is not None:
        first = matched.exceptions[0]
        if isinstance(first, NotStarted):
            return first.reason
        matched = first if isinstance(first, BaseExceptionGroup) else None
    return None


class QuietKnownFailure(logging.Filter):
    """For uvicorn's logger: drops the traceback of an app start that failed for a reason
    the coordinator tells itself (a ``BorutaError``)."""

    def __init__(self, state: Any) -> None:
        super().__init__()
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not str(record.msg).startswith(_TRACEBACK):
            return True
        return first_known(getattr(self._state, "start_error", None)) is None
