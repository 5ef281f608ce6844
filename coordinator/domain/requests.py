"""The request rules (docs/boruta-api.md §request states): create, update, run, close, time out."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from coordinator.domain.ids import HI_PRIO, LO_PRIO, RequestID, WorkerUUID
from coordinator.domain.model import Job, KeyType, Request, User
from coordinator.domain.quotas import job_quota_reached
from coordinator.domain.states import REQUEST_TRANSITIONS, RequestState
from coordinator.errors import (
    DeadlineInThePast,
    InvalidTimeRange,
    ModificationForbidden,
    PriorityOutOfBounds,
    ProlongLimitReached,
    WorkerNotAssigned,
)


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """The limits the original hard-coded, made configurable (docs/boruta-api.md §defaults)."""

    job_timeout: timedelta = timedelta(hours=1)  # also the prolong period
    max_job_length: timedelta = timedelta(hours=24)  # bounds prolong
    default_priority: int = 8


def add_month(when: datetime) -> datetime:
    """One calendar month later, normalised as Go's ``AddDate(0, 1, 0)`` does (31 Jan → 3 Mar)."""
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    last = calendar.monthrange(year, month)[1]
    overflow = max(0, when.day - last)
    return when.replace(year=year, month=month, day=min(when.day, last)) + timedelta(overflow)


def _check_priority(priority: int) -> None:
    if not HI_PRIO <= priority <= LO_PRIO:
        raise PriorityOutOfBounds


def _move(req: Request, to: RequestState, reason: str = "") -> Request:
    if (req.state, to) not in REQUEST_TRANSITIONS:
        raise ModificationForbidden(req.state, to)
    return replace(req, state=to, reason=reason or req.reason)


def create(
    rid: RequestID,
    owner: User,
    priority: int,
    caps: Mapping[str, str],
    valid_after: datetime | None,
    deadline: datetime | None,
    now: datetime,
    queued: int,
    key_type: KeyType = KeyType.RSA,
) -> Request:
    """A new WAITING request; checks in the original's order (docs/boruta-api.md §new request).

    ``None`` times stand for Go's zero time: ValidAfter defaults to now and Deadline to
    one month from now.
    """
    if deadline is not None and deadline < now:
        raise DeadlineInThePast
    if deadline is not None and valid_after is not None and valid_after > deadline:
        raise InvalidTimeRange
    _check_priority(priority)
    return Request(
        id=rid,
        priority=priority,
        owner=owner.name,
        groups=owner.groups,
        caps=dict(caps),
        valid_after=valid_after or now,
        deadline=deadline or add_month(now),
        state=RequestState.WAITING,
        created=now,
        queued=queued,
        key_type=key_type,
    )


def update(
    req: Request,
    priority: int | None,
    valid_after: datetime | None,
    deadline: datetime | None,
    now: datetime,
    queued: int,
) -> Request:
    """Change priority and times of a WAITING request (docs/boruta-api.md §update request).

    A new priority sends the request to the back of that priority's queue, taking
    ``queued`` as its new place.
    """
    if req.state is not RequestState.WAITING:
        raise ModificationForbidden(req.state)
    if priority is not None:
        _check_priority(priority)
    if deadline is not None and deadline < now:
        raise DeadlineInThePast
    new_deadline = deadline or req.deadline
    if valid_after is not None and valid_after > new_deadline:
        raise InvalidTimeRange
    moved = priority is not None and priority != req.priority
    return replace(
        req,
        priority=priority if priority is not None else req.priority,
        valid_after=valid_after or req.valid_after,
        deadline=new_deadline,
        queued=queued if moved else req.queued,
    )


def is_ready(req: Request, now: datetime) -> bool:
    """Whether the matcher may give the request a worker now (docs/boruta-api.md §matcher)."""
    return req.state is RequestState.WAITING and req.valid_after <= now < req.deadline


def run(
    req: Request,
    worker: WorkerUUID,
    now: datetime,
    policy: RequestPolicy,
    max_job: timedelta | None = None,
) -> Request:
    """WAITING → IN PROGRESS on a worker, with the job timeout starting now; never longer
    than the owner's longest job (``max_job``, docs/scheduling.md §quotas)."""
    period = policy.job_timeout if max_job is None else min(policy.job_timeout, max_job)
    job = Job(worker=worker, started=now, timeout=now + period)
    return replace(_move(req, RequestState.IN_PROGRESS), job=job)


def close(req: Request) -> Request:
    """Close: WAITING → CANCELLED, IN PROGRESS → DONE (docs/boruta-api.md §close request)."""
    if req.state is RequestState.WAITING:
        return _move(req, RequestState.CANCELLED)
    return _move(req, RequestState.DONE)


def time_out(req: Request, now: datetime) -> Request | None:
    """WAITING → TIMEOUT once the deadline has passed; ``None`` for a stale timer."""
    if req.state is not RequestState.WAITING or req.deadline > now:
        return None
    return _move(req, RequestState.TIMEOUT, reason="deadline passed before a worker was free")


def expire_job(req: Request, now: datetime) -> Request | None:
    """IN PROGRESS → DONE once the job timeout has passed; ``None`` if it was prolonged."""
    if req.state is not RequestState.IN_PROGRESS or req.job is None or req.job.timeout > now:
        return None
    return _move(req, RequestState.DONE, reason="job timeout")


def fail(req: Request, reason: str) -> Request:
    """IN PROGRESS → FAILED: its worker left RUN for FAIL or maintenance."""
    return _move(req, RequestState.FAILED, reason=reason)


def invalidate(req: Request, reason: str) -> Request:
    """WAITING → INVALID: no registered worker could ever take it."""
    return _move(req, RequestState.INVALID, reason=reason)


def prolong(
    req: Request, now: datetime, policy: RequestPolicy, max_job: timedelta | None = None
) -> Request:
    """Push the job timeout one period from now, never past the maximum job length nor the
    owner's longest job (``max_job``: ``JobQuotaReached`` when that is the limit hit)."""
    if req.state is not RequestState.IN_PROGRESS or req.job is None:
        raise WorkerNotAssigned
    limit = req.job.started + policy.max_job_length
    if max_job is not None and max_job < policy.max_job_length:
        limit = req.job.started + max_job
        if req.job.timeout >= limit:
            raise job_quota_reached(req.owner, max_job)
    if req.job.timeout >= limit:
        raise ProlongLimitReached
    timeout = min(now + policy.job_timeout, limit)
    return replace(req, job=replace(req.job, timeout=max(timeout, req.job.timeout)))
