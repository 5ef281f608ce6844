"""What the clients answer: requests and workers as the API shows them, from JSON or the domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coordinator import boruta_json as bj
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import KeyType, Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import MalformedInput
from coordinator.wire import CheckResult, HealthReport


@dataclass(frozen=True, slots=True)
class JobInfo:
    """The worker a request holds and when its job ends."""

    worker: WorkerUUID
    timeout: datetime


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as ``GET /api/v1/reqs/{id}`` shows it (the original's ReqInfo)."""

    id: RequestID
    priority: int
    owner: str
    groups: tuple[str, ...]
    caps: Mapping[str, str]
    valid_after: datetime
    deadline: datetime
    state: RequestState
    job: JobInfo | None = None
    reason: str = ""
    key_type: KeyType = KeyType.RSA  # the job key it asked for

    @classmethod
    def from_json(cls, data: Any) -> RequestInfo:
        d = bj.expect_object(data, "request")
        owner = bj.expect_object(d.get("Owner") or {}, "Owner")
        job = d.get("Job")
        return cls(
            id=RequestID(_int(d, "ID")),
            priority=_int(d, "Priority"),
            owner=str(owner.get("Name") or ""),
            groups=tuple(bj.string_list(owner.get("Groups"), "Groups")),
            caps=bj.string_map(d.get("Caps"), "Caps"),
            valid_after=_time(d, "ValidAfter"),
            deadline=_time(d, "Deadline"),
            state=RequestState(str(d.get("State"))),
            job=None
            if job is None
            else JobInfo(WorkerUUID(str(job["WorkerUUID"])), _time(job, "Timeout")),
            reason=str(d.get("Reason") or ""),
            key_type=bj.key_type_in(d),
        )

    @classmethod
    def from_domain(cls, req: Request) -> RequestInfo:
        # Through the wire format, so that both ways round times to what the API shows.
        return cls.from_json(bj.request_json(req))


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as ``GET /api/v1/workers/{uuid}`` shows it (WorkerInfo plus additive fields)."""

    uuid: WorkerUUID
    state: WorkerState
    groups: tuple[str, ...]
    caps: Mapping[str, str]
    reason: str = ""
    connected: bool | None = None  # whether its dryad link is up
    health: tuple[datetime, HealthReport] | None = field(default=None)  # last healthcheck

    @classmethod
    def from_json(cls, data: Any) -> WorkerInfo:
        d = bj.expect_object(data, "worker")
        health = d.get("Health")
        connected = d.get("Connected")
        return cls(
            uuid=WorkerUUID(str(d.get("WorkerUUID"))),
            state=WorkerState(str(d.get("State"))),
            groups=tuple(bj.string_list(d.get("Groups"), "Groups")),
            caps=bj.string_map(d.get("Caps"), "Caps"),
            reason=str(d.get("Reason") or ""),
            connected=connected if isinstance(connected, bool) else None,
            health=None if health is None else health_from_json(health),
        )

    @classmethod
    def from_domain(
        cls,
        worker: Worker,
        connected: bool | None,
        health: tuple[datetime, HealthReport] | None,
    ) -> WorkerInfo:
        return cls.from_json(bj.worker_json(worker, connected, health))


@dataclass(frozen=True, slots=True)
class TransitionInfo:
    """One change of a request or worker as ``GET /api/v1/history`` shows it (additive)."""

    id: int
    kind: str  # "request" or "worker"
    subject: str  # request ID or worker UUID, as text
    old: str  # the state's wire text; "" when the subject was created
    new: str  # "" when the subject was removed
    reason: str
    actor: str  # a user name, or "" for the coordinator itself
    at: datetime

    @classmethod
    def from_json(cls, data: Any) -> TransitionInfo:
        d = bj.expect_object(data, "transition")
        return cls(
            id=_int(d, "id"),
            kind=str(d.get("kind") or ""),
            subject=str(d.get("subject") or ""),
            old=str(d.get("old") or ""),
            new=str(d.get("new") or ""),
            reason=str(d.get("reason") or ""),
            actor=str(d.get("actor") or ""),
            at=_time(d, "at"),
        )


def health_from_json(data: Any) -> tuple[datetime, HealthReport]:
    d = bj.expect_object(data, "Health")
    checks = d.get("Checks") or []
    if not isinstance(checks, list):
        raise MalformedInput("Checks must be a list")
    return _time(d, "At"), HealthReport(
        tuple(
            CheckResult(
                str(c.get("Name", "")),
                bool(c.get("Passed")),
                bool(c.get("Critical")),
                str(c.get("Detail") or ""),
            )
            for c in (bj.expect_object(c, "check") for c in checks)
        )
    )


def _int(d: Mapping[str, Any], key: str) -> int:
    value = bj.optional_int(d, key)
    if value is None:
        raise MalformedInput(f"{key} is missing")
    return value


def _time(d: Mapping[str, Any], key: str) -> datetime:
    when = bj.parse_time(d.get(key), key)
    if when is None:
        raise MalformedInput(f"{key} is missing")
    return when
