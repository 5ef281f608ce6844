"""Domain values with every field set, for the store tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Job, Request, Transition, Worker
from coordinator.domain.states import RequestState, WorkerState

# Microseconds and a non-UTC offset: both must survive the round trip.
T0: Final = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
CET: Final = timezone(timedelta(hours=1))


def worker_uuid(n: int) -> WorkerUUID:
    return WorkerUUID(f"00000000-0000-4000-8000-{n:012d}")


def make_request(n: int, **changes: object) -> Request:
    request = Request(
        id=RequestID(n),
        priority=1 + n % 16,
        owner="alice",
        groups=("lab", "ünïcode"),
        caps={"device_type": "rpi4", "ßpecial": "välue ☃"},
        valid_after=T0 + timedelta(microseconds=n),
        deadline=(T0 + timedelta(hours=1, microseconds=1)).astimezone(CET),
        state=RequestState.WAITING,
        created=T0,
        queued=n * 10,
        reason="",
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def with_job(request: Request, worker: int) -> Request:
    job = Job(
        worker_uuid(worker), started=T0 + timedelta(seconds=1), timeout=T0 + timedelta(hours=2)
    )
    return replace(request, state=RequestState.IN_PROGRESS, job=job)


def make_worker(n: int, **changes: object) -> Worker:
    uuid = worker_uuid(n)
    worker = Worker(
        uuid=uuid,
        state=WorkerState.IDLE,
        caps={"UUID": uuid, "device_type": "rpi4", "note": "ñ 板"},
        groups=("lab",),
        registered=T0,
        changed=T0 + timedelta(microseconds=999999),
        ssh_address=f"10.0.0.{n}:22",
        reason="",
        epoch=n,
        key=b"-----BEGIN RSA PRIVATE KEY-----\n\x00\xff\n",
    )
    return replace(worker, **changes)  # type: ignore[arg-type]


def make_transition(subject: str, old: str, new: str, seconds: int = 0) -> Transition:
    return Transition(
        at=T0 + timedelta(seconds=seconds),
        kind="request",
        subject=subject,
        old=old,
        new=new,
        reason="why ☃",
        actor="alice",
    )
