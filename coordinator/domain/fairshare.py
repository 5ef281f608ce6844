"""Fair share (docs/scheduling.md §fair share): decayed usage and the order it gives the queue.

A user's usage is the board-seconds their jobs held, each second worth half as much one
half-life later. It is stored as a value and the instant it was decayed to, so charges
from any coordinator, in any order, add up to the same figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from coordinator.domain.model import Request
from coordinator.domain.quotas import Quota
from coordinator.errors import BadQuota


class Policy(StrEnum):
    """How requests of one priority are ordered."""

    FIFO = "fifo"  # first come, first served: the original's order
    FAIR = "fair"  # the owner with the least recent usage first, then FIFO


DEFAULT_HALF_LIFE: Final = timedelta(days=1)
MIN_HALF_LIFE: Final = timedelta(minutes=1)
MAX_HALF_LIFE: Final = timedelta(days=365)


def parse_policy(text: str) -> Policy:
    """The policy named ``text``; raises ``BadQuota`` for any other word."""
    try:
        return Policy(text.strip().lower())
    except ValueError:
        raise BadQuota(f"scheduling policy must be fifo or fair, not {text!r}") from None


def check_half_life(half_life: timedelta) -> timedelta:
    """``half_life`` if usable: zero would forget all usage at once, a year is a typo."""
    if not MIN_HALF_LIFE <= half_life <= MAX_HALF_LIFE:
        raise BadQuota(
            f"the usage half-life must be from {int(MIN_HALF_LIFE.total_seconds())} to "
            f"{int(MAX_HALF_LIFE.total_seconds())} seconds, not {half_life.total_seconds():g}"
        )
    return half_life


@dataclass(frozen=True, slots=True)
class Scheduling:
    """The policy in force and the half-life of usage."""

    policy: Policy = Policy.FIFO
    half_life: timedelta = DEFAULT_HALF_LIFE


@dataclass(frozen=True, slots=True)
class Usage:
    """One user's decayed board-seconds, as of ``at``."""

    owner: str
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class Charge:
    """A job's time to add to its owner's usage, committed with the job's end."""

    owner: str
    start: datetime
    end: datetime
    half_life: timedelta

    def onto(self, old: Usage | None) -> Usage:
        return charge(old, self.owner, self.start, self.end, self.half_life)


def decayed(value: float, since: datetime, now: datetime, half_life: timedelta) -> float:
    """``value`` as of ``since``, decayed to ``now`` (never grown: a clock behind is ``since``)."""
    if now <= since:
        return value
    return value * math.pow(0.5, (now - since) / half_life)


def held(start: datetime, end: datetime, half_life: timedelta) -> float:
    """The decayed board-seconds, as of ``end``, of one board held from ``start`` to ``end``.

    The integral of 2^(-(end - t)/h) over [start, end]: h/ln 2 * (1 - 2^(-(end - start)/h)).
    """
    if end <= start:
        return 0.0
    h = half_life.total_seconds()
    return h / math.log(2) * -math.expm1(-math.log(2) * (end - start).total_seconds() / h)


def charge(
    old: Usage | None, owner: str, start: datetime, end: datetime, half_life: timedelta
) -> Usage:
    """``old`` plus a job held from ``start`` to ``end``; commutative across charges."""
    add = held(start, end, half_life)
    if old is None:
        return Usage(owner, add, end)
    at = max(old.at, end)
    value = decayed(old.value, old.at, at, half_life) + decayed(add, end, at, half_life)
    return Usage(owner, value, at)


def usage_now(
    stored: Mapping[str, Usage],
    running: Iterable[tuple[str, datetime]],
    now: datetime,
    half_life: timedelta,
) -> dict[str, float]:
    """Each user's usage at ``now``: the stored figure decayed, plus the jobs still running
    (``(owner, started)``), which are charged only when they end."""
    out = {owner: decayed(u.value, u.at, now, half_life) for owner, u in stored.items()}
    for owner, started in running:
        out[owner] = out.get(owner, 0.0) + held(started, now, half_life)
    return out


OrderKey = Callable[[Request], tuple[int, float, int, int]]


def order_key(policy: Policy, usage: Mapping[str, float]) -> OrderKey:
    """The matching order as a sort key: priority, then (``fair``) usage, then FIFO."""
    if policy is Policy.FIFO:
        return lambda r: (r.priority, 0.0, r.queued, r.id)
    return lambda r: (r.priority, usage.get(r.owner, 0.0), r.queued, r.id)


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One user's line of the usage report."""

    name: str
    usage: float  # decayed board-seconds now
    holds: int  # boards held now
    waiting: int  # requests waiting now
    limits: Quota  # the limits that apply (the user's own groups; none known: own quota)


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The scheduling in force and every user's usage, least first (the ``fair`` order)."""

    scheduling: Scheduling
    users: list[UserUsage]
