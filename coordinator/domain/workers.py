"""The worker state machine (docs/boruta-api.md §worker states), with FAIL reasons kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from coordinator.domain.ids import UUID_CAP, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import (
    BadAddress,
    ForbiddenStateChange,
    InMaintenance,
    MissingUUID,
    ModificationForbidden,
    NotInFailOrMaintenance,
    WrongStateArgument,
)

_IDLE_OR_PREPARE = frozenset({WorkerState.IDLE, WorkerState.PREPARE})


def split_address(address: str) -> tuple[str, int]:
    """Host and port of ``host:port`` or ``[v6]:port``; the original's address errors."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise BadAddress("IP address is missing from address")
    # ASCII digits only (str.isdigit also takes "²", which int() refuses); leading zeros go
    # before the length check, so "0022" passes and 5000 digits never reach int().
    digits = port.lstrip("0") or "0"
    number = int(digits) if port.isascii() and port.isdigit() and len(digits) <= 5 else 0
    if not 0 < number < 65536:
        raise BadAddress("Port is missing from address")
    return host, number


def move(worker: Worker, to: WorkerState, now: datetime, reason: str = "") -> Worker:
    """Any state change; a new epoch makes pending background results stale."""
    return replace(
        worker,
        state=to,
        changed=now,
        epoch=worker.epoch + 1,
        reason=reason if to is WorkerState.FAIL else "",
    )


def register(
    known: Worker | None,
    caps: Mapping[str, str],
    ssh_address: str,
    now: datetime,
    host_keys: tuple[str, ...] = (),
) -> Worker:
    """A dryad's (re-)registration (docs/boruta-api.md §register).

    A new worker starts in MAINTENANCE. A known one in FAIL goes to PREPARE; a changed
    sshd port or changed caps force BUSY (maintenance), since that needs an admin's look.
    The sshd's ``host_keys`` (checked by the caller) replace the last ones: the link that
    reports them is authenticated, and a re-imaged board has new ones.
    """
    uuid = caps.get(UUID_CAP)
    if not uuid:
        raise MissingUUID
    _host, port = split_address(ssh_address)
    if known is None:
        return Worker(
            uuid=WorkerUUID(uuid),
            state=WorkerState.MAINTENANCE,
            caps=dict(caps),
            groups=(),
            registered=now,
            changed=now,
            ssh_address=ssh_address,
            host_keys=host_keys,
        )
    state = WorkerState.PREPARE if known.state is WorkerState.FAIL else known.state
    if split_address(known.ssh_address)[1] != port or dict(known.caps) != dict(caps):
        state = WorkerState.BUSY
    updated = replace(known, caps=dict(caps), ssh_address=ssh_address, host_keys=host_keys)
    return updated if state is known.state else move(updated, state, now)


def set_fail(worker: Worker, reason: str, now: datetime) -> Worker:
    """The dryad reports a failure; refused while in maintenance (docs/boruta-api.md §set fail)."""
    if worker.state in (WorkerState.MAINTENANCE, WorkerState.BUSY):
        raise InMaintenance
    return move(worker, WorkerState.FAIL, now, reason)


def set_state(worker: Worker, target: WorkerState, now: datetime) -> Worker | None:
    """An admin's IDLE or MAINTENANCE, ``None`` if no change (docs/boruta-api.md §set state)."""
    if target is WorkerState.MAINTENANCE:
        return None if worker.state is WorkerState.BUSY else move(worker, WorkerState.BUSY, now)
    if target is not WorkerState.IDLE:
        raise WrongStateArgument
    if worker.state is WorkerState.PREPARE:
        return None
    if worker.state is not WorkerState.MAINTENANCE:
        raise ForbiddenStateChange
    return move(worker, WorkerState.PREPARE, now)


def set_groups(worker: Worker, groups: Iterable[str]) -> Worker:
    """Replace the groups; stored sorted and without repeats."""
    return replace(worker, groups=tuple(sorted(set(groups))))


def check_deregister(worker: Worker) -> None:
    """Only a worker in MAINTENANCE or FAIL may be removed."""
    if worker.state not in (WorkerState.MAINTENANCE, WorkerState.FAIL):
        raise NotInFailOrMaintenance


def take(worker: Worker, now: datetime) -> Worker:
    """The matcher gives an IDLE worker a job: IDLE → RUN."""
    if worker.state is not WorkerState.IDLE:
        raise ModificationForbidden(worker.state, WorkerState.RUN)
    return move(worker, WorkerState.RUN, now)


def finish_job(worker: Worker, now: datetime) -> Worker | None:
    """The job ended: RUN → PREPARE (a new key follows); ``None`` if it already left RUN."""
    if worker.state is not WorkerState.RUN:
        return None
    return move(worker, WorkerState.PREPARE, now)


def prepared(worker: Worker, epoch: int, key: bytes, now: datetime) -> Worker | None:
    """The dryad took the new key: PREPARE → IDLE, unless a newer state overtook it."""
    if worker.state is not WorkerState.PREPARE or worker.epoch != epoch:
        return None
    return replace(move(worker, WorkerState.IDLE, now), key=key)


def rekeyed(worker: Worker, key: bytes) -> Worker:
    """An IDLE worker whose dryad took a key of another type just before its job."""
    if worker.state is not WorkerState.IDLE:
        raise ModificationForbidden(worker.state, WorkerState.RUN)
    return replace(worker, key=key)


def in_maintenance(worker: Worker, epoch: int, now: datetime) -> Worker | None:
    """The dryad shows maintenance: BUSY → MAINTENANCE, unless overtaken."""
    if worker.state is not WorkerState.BUSY or worker.epoch != epoch:
        return None
    return move(worker, WorkerState.MAINTENANCE, now)


def operation_failed(worker: Worker, epoch: int, reason: str, now: datetime) -> Worker | None:
    """A prepare or maintenance step failed: → FAIL with the reason, unless overtaken."""
    if worker.state not in (WorkerState.PREPARE, WorkerState.BUSY) or worker.epoch != epoch:
        return None
    return move(worker, WorkerState.FAIL, now, reason)


def fails_job(old: WorkerState, new: WorkerState) -> bool:
    """RUN → anything but IDLE or PREPARE fails its job (docs/boruta-api.md §side effects)."""
    return old is WorkerState.RUN and new is not WorkerState.RUN and new not in _IDLE_OR_PREPARE
