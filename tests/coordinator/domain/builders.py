"""Builders of domain values for the tests: valid defaults, overridable by keyword."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from coordinator.domain.ids import UUID_CAP, RequestID, WorkerUUID
from coordinator.domain.model import Job, Request, Worker
from coordinator.domain.states import RequestState, WorkerState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def uuid(n: int) -> WorkerUUID:
    """A valid lower-case UUID whose order follows ``n``."""
    return WorkerUUID(f"00000000-0000-0000-0000-{n:012x}")


def make_request(
    rid: int = 1,
    *,
    priority: int = 8,
    caps: Mapping[str, str] | None = None,
    groups: tuple[str, ...] = (),
    state: RequestState = RequestState.WAITING,
    valid_after: datetime = T0,
    deadline: datetime = T0 + 24 * HOUR,
    queued: int | None = None,
    job: Job | None = None,
) -> Request:
    return Request(
        id=RequestID(rid),
        priority=priority,
        owner="alice",
        groups=groups,
        caps=dict(caps or {}),
        valid_after=valid_after,
        deadline=deadline,
        state=state,
        created=T0,
        queued=rid if queued is None else queued,
        job=job,
    )


def running(req: Request, worker: WorkerUUID, started: datetime = T0) -> Request:
    """``req`` IN PROGRESS on ``worker`` with a one-hour job from ``started``."""
    job = Job(worker=worker, started=started, timeout=started + HOUR)
    return replace(req, state=RequestState.IN_PROGRESS, job=job)


def make_worker(
    n: int = 1,
    *,
    caps: Mapping[str, str] | None = None,
    groups: tuple[str, ...] = (),
    state: WorkerState = WorkerState.IDLE,
    address: str = "10.0.0.1:22",
    epoch: int = 0,
) -> Worker:
    """Worker ``uuid(n)``; its caps always hold its UUID, as registration guarantees."""
    return Worker(
        uuid=uuid(n),
        state=state,
        caps={UUID_CAP: uuid(n), **(caps or {})},
        groups=groups,
        registered=T0,
        changed=T0,
        ssh_address=address,
        epoch=epoch,
    )
