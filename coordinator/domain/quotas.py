"""Quotas (docs/scheduling.md §quotas): the limits an admin sets per user and per group.

A user's own quota wins, field by field; a field it leaves unset comes from the user's
groups, the strictest of those that set it; a field nobody sets has no limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, TypeVar

from coordinator.errors import BadQuota, JobQuotaReached, QuotaExceeded

# Beyond these a value is a typo, not a policy: the farm has no such number of boards.
MAX_HELD: Final = 10_000
MAX_WAITING: Final = 1_000_000
MAX_JOB: Final = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits of one user or group; ``None`` is no limit."""

    max_held: int | None = None  # boards held at once (IN PROGRESS requests)
    max_waiting: int | None = None  # WAITING requests at once
    max_job: timedelta | None = None  # a job's length, prolongs included

    def __bool__(self) -> bool:
        return not (self.max_held is None and self.max_waiting is None and self.max_job is None)


NO_QUOTA: Final = Quota()


def checked(quota: Quota) -> Quota:
    """``quota`` if every value is in range; raises ``BadQuota`` naming the first that is not."""
    _count("MaxHeld", quota.max_held, MAX_HELD)
    _count("MaxWaiting", quota.max_waiting, MAX_WAITING)
    job = quota.max_job
    if job is not None and not timedelta(seconds=1) <= job <= MAX_JOB:
        raise BadQuota(
            f"MaxJobSeconds must be from 1 to {int(MAX_JOB.total_seconds())}, "
            f"not {job.total_seconds():g}"
        )
    return quota


def _count(name: str, value: int | None, most: int) -> None:
    if value is not None and not 0 <= value <= most:
        raise BadQuota(f"{name} must be a whole number from 0 to {most}, not {value}")


Limit = TypeVar("Limit", int, timedelta)


def _pick(own: Limit | None, theirs: Iterable[Limit | None]) -> Limit | None:
    """The user's own value, else the strictest the groups set, else no limit."""
    if own is not None:
        return own
    given = [v for v in theirs if v is not None]
    return min(given) if given else None


@dataclass(frozen=True, slots=True)
class Quotas:
    """Every quota an admin set: by user name and by group name."""

    users: Mapping[str, Quota] = field(default_factory=dict)
    groups: Mapping[str, Quota] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)

    def limits(self, owner: str, groups: Iterable[str]) -> Quota:
        """The limits that apply to ``owner``, a member of ``groups``."""
        own = self.users.get(owner, NO_QUOTA)
        theirs = [self.groups[g] for g in groups if g in self.groups]
        if not theirs:
            return own
        return Quota(
            _pick(own.max_held, (q.max_held for q in theirs)),
            _pick(own.max_waiting, (q.max_waiting for q in theirs)),
            _pick(own.max_job, (q.max_job for q in theirs)),
        )


def over_held(limit: Quota, held: int) -> str:
    """Why a WAITING request of an owner holding ``held`` boards is passed over, or ``""``."""
    if limit.max_held is not None and held >= limit.max_held:
        return f"over quota: holds {held} of {limit.max_held} boards"
    return ""


def check_waiting(owner: str, limit: Quota, waiting: int) -> None:
    """Refuse a new request of an owner who has ``waiting`` requests waiting already."""
    if limit.max_waiting is not None and waiting >= limit.max_waiting:
        raise QuotaExceeded(
            f"over quota: {owner} has {waiting} requests waiting, the limit is {limit.max_waiting}"
        )


def job_quota_reached(owner: str, limit: timedelta) -> JobQuotaReached:
    """The error of a prolong past ``owner``'s longest job."""
    return JobQuotaReached(
        f"over quota: jobs of {owner} may last at most {int(limit.total_seconds())} s"
    )
