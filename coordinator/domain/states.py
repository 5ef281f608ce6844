"""Request and worker states; each enum value is the original's wire string."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RequestState(StrEnum):
    """State of a request (docs/boruta-api.md §request states)."""

    WAITING = "WAITING"
    IN_PROGRESS = "IN PROGRESS"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    INVALID = "INVALID"
    DONE = "DONE"
    FAILED = "FAILED"


class WorkerState(StrEnum):
    """State of a worker (docs/boruta-api.md §worker states)."""

    MAINTENANCE = "MAINTENANCE"
    IDLE = "IDLE"
    RUN = "RUNNING"
    FAIL = "FAILED"
    PREPARE = "PREPARE"  # being prepared to enter IDLE
    BUSY = "BUSY"  # being prepared to enter MAINTENANCE


FINAL_REQUEST_STATES: Final = frozenset(
    {
        RequestState.CANCELLED,
        RequestState.TIMEOUT,
        RequestState.INVALID,
        RequestState.DONE,
        RequestState.FAILED,
    }
)

REQUEST_TRANSITIONS: Final[frozenset[tuple[RequestState, RequestState]]] = frozenset(
    {
        (RequestState.WAITING, RequestState.IN_PROGRESS),
        (RequestState.WAITING, RequestState.CANCELLED),
        (RequestState.WAITING, RequestState.TIMEOUT),
        (RequestState.WAITING, RequestState.INVALID),
        (RequestState.IN_PROGRESS, RequestState.DONE),
        (RequestState.IN_PROGRESS, RequestState.FAILED),
    }
)
