"""Stored values of the event feed: numbered transitions, webhooks and their deliveries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from coordinator.domain.model import Transition

DeliveryStatus = Literal["pending", "delivered", "dropped"]
EVENT_KINDS: Final = ("request", "worker")


@dataclass(frozen=True, slots=True)
class Numbered:
    """A stored transition with its ``transitions.id``: the event stream's position."""

    id: int
    transition: Transition


@dataclass(frozen=True, slots=True)
class TransitionQuery:
    """Which transitions to read; empty sets match everything."""

    kinds: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()  # the old or the new state is one of these


@dataclass(frozen=True, slots=True)
class Webhook:
    """An admin's subscription of a URL to event kinds; deleted ones stay as a record."""

    id: int
    url: str
    kinds: tuple[str, ...]
    # A shared HMAC key, so it is stored as given (a hash could not sign); never logged.
    secret: str = field(repr=False)
    created_by: str
    created_at: datetime
    since_event: int  # only events after this one are delivered
    deleted_by: str | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one webhook, and how its delivery went so far."""

    id: int
    hook_id: int
    event_id: int
    status: DeliveryStatus
    attempts: int
    last_error: str
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A pending delivery with what sending it needs."""

    delivery: Delivery
    url: str
    secret: str = field(repr=False)
    event: Numbered


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery just added for an event the feed holds in memory, with where to send it."""

    delivery: Delivery
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class JobEdge:
    """A request's transition into or out of IN PROGRESS, with its owner and worker."""

    event: Numbered
    owner: str
    worker: str
