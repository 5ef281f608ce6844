"""The ``Store`` port: transactional persistence of requests, workers, users, transitions,
dryad enrolment, tunnel ports, usage and quotas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Transition, User, Worker
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.store.records import (
    Delivery,
    DeliveryStatus,
    DueDelivery,
    JobEdge,
    NewDelivery,
    Numbered,
    TransitionQuery,
    Webhook,
)

QuotaKind = Literal["user", "group"]
IN_SQL: Final = 500  # the longest ID or priority list a query puts in SQL


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one service operation changed; committed in one transaction."""

    requests: Sequence[Request] = ()  # inserted or replaced whole
    workers: Sequence[Worker] = ()  # inserted or replaced whole
    removed_workers: Sequence[WorkerUUID] = ()
    transitions: Sequence[Transition] = ()  # appended
    charges: Sequence[Charge] = ()  # ended jobs, added to their owners' usage

    def __bool__(self) -> bool:
        return bool(
            self.requests
            or self.workers
            or self.removed_workers
            or self.transitions
            or self.charges
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stored state the service holds in memory, read once at start-up: every live
    request, the newest finished ones (docs/architecture.md §requests in memory), every
    worker, the usage and quotas."""

    requests: list[Request]
    workers: list[Worker]
    usage: dict[str, Usage] = field(default_factory=dict)
    quotas: Quotas = field(default_factory=Quotas)
    next_id: int = 1  # above every stored request ID
    next_queued: int = 1  # above every stored queue place
    left_out: int = 0  # finished requests left in the store, not in ``requests``


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Which finished requests to read: those with an ID below ``below`` that match every
    non-empty set, and the one with ID ``anchor`` whatever it is."""

    below: int
    ids: frozenset[int] = frozenset()
    priorities: frozenset[int] = frozenset()
    states: frozenset[RequestState] = FINAL_REQUEST_STATES  # finished states only
    anchor: int | None = None

    @property
    def short(self) -> bool:
        """Whether its lists fit in one SQL statement, as ``finished_window`` needs: a
        statement has at most 32,766 parameters on SQLite, 65,535 on PostgreSQL."""
        return len(self.ids) <= IN_SQL and len(self.priorities) <= IN_SQL


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """The cause of the latest failed write (a ``StoreUnavailable`` message), and when it
    happened (``time.monotonic``)."""

    cause: str
    at: float


@dataclass(frozen=True, slots=True)
class Window:
    """One page's worth of a listing's finished requests: sorted by ``order`` (a listing's
    sort item, then the ID), the ``limit`` just past ``anchor`` (``backward``: just before
    it; without an anchor, the first or the last ones)."""

    order: str  # "id", "priority", "deadline", "validafter" or "state"
    descending: bool
    anchor: Request | None
    backward: bool
    limit: int


@dataclass(frozen=True, slots=True)
class WindowRows:
    """The window's requests, in any order; how many match in all, and how many lie past
    the anchor on the window's side (all of them without an anchor)."""

    rows: list[Request]
    total: int
    beyond: int


class Store(Protocol):
    """Blocking persistence; the service calls every method from a worker thread.

    Implementations must raise ``StoreUnavailable`` (never a driver exception) when the
    database cannot be read or written, and must leave the stored state unchanged when
    ``commit`` fails.
    """

    def migrate(self) -> None:
        """Bring the schema to the newest version."""

    def load(self, finished: int | None = None) -> Snapshot:
        """Read the live requests and the ``finished`` finished ones with the highest IDs
        (all of them with ``None``), every worker, the users' usage and the quotas."""

    def request(self, rid: RequestID) -> Request | None:
        """One stored request, or ``None``."""

    def finished_requests(self, query: RequestQuery) -> list[Request]:
        """The finished requests ``query`` selects, by ID."""

    def finished_window(self, query: RequestQuery, window: Window) -> WindowRows:
        """The finished requests ``query`` selects (the window's anchor left out), read
        one window at a time."""

    def commit(self, changes: Changes) -> list[Numbered]:
        """Apply ``changes`` atomically and durably; returns its transitions with the ids
        the store gave them, in order (the event feed hands them on from memory)."""

    def usage(self) -> dict[str, Usage]:
        """Every user's stored usage, as last charged."""

    def quotas(self) -> Quotas:
        """Every quota, by user and by group."""

    def put_quota(self, kind: QuotaKind, name: str, quota: Quota) -> None:
        """Set (insert or replace) the quota of a user or a group."""

    def delete_quota(self, kind: QuotaKind, name: str) -> None:
        """Remove a quota; raises ``NotFound`` when there is none."""

    def add_user(self, user: User, token_hash: str) -> None:
        """Create a user; raises ``Conflict`` when the name is taken."""

    def set_token(self, name: str, token_hash: str) -> None:
        """Replace a user's token; raises ``NotFound`` for an unknown user."""

    def remove_user(self, name: str) -> None:
        """Delete a user; raises ``NotFound`` for an unknown user."""

    def user_by_token(self, token_hash: str) -> User | None:
        """Find the user holding a token, by its hash."""

    def users(self) -> list[User]:
        """Every user, by name."""

    def transitions(
        self, kind: str | None = None, subject: str | None = None, limit: int = 1000
    ) -> list[Transition]:
        """Recorded transitions, oldest first, optionally of one kind and subject.

        With more than ``limit`` matches, the latest ``limit`` are returned.
        """

    def add_enrol_token(self, token_hash: str, expires: datetime) -> None:
        """Store an enrolment token, by its hash, valid until ``expires``."""

    def enrol_token_valid(self, token_hash: str, now: datetime) -> bool:
        """Whether the token exists, is not revoked and has not expired at ``now``."""

    def revoke_enrol_tokens(self) -> int:
        """Revoke every enrolment token; returns how many were not revoked before."""

    def bind_dryad(self, uuid: str, public_key: str) -> None:
        """Bind a worker UUID to the dryad's SSH public key (OpenSSH ``type base64``).

        Idempotent for the same key; raises ``Conflict`` when ``uuid`` is bound to another.
        """

    def dryad_key(self, uuid: str) -> str | None:
        """The public key ``uuid`` is bound to, or ``None`` if it is not enrolled."""

    def tunnel_ports(self) -> dict[RequestID, int]:
        """The port last given to each request's tunnel."""

    def put_tunnel_port(self, rid: RequestID, port: int) -> None:
        """Record that ``rid``'s tunnel listens on ``port`` (replacing both's old rows)."""

    # ---- the event feed (coordinator.feed: events, webhooks; the history) ----------------

    def last_transition_id(self) -> int:
        """The id of the newest transition, 0 when there is none."""

    def transitions_after(
        self, after_id: int, limit: int, query: TransitionQuery = ..., *, latest: bool = False
    ) -> list[Numbered]:
        """Matching transitions with an id above ``after_id``, oldest first: the first
        ``limit`` of them, or with ``latest`` the last ``limit``."""

    def job_edges(self, worker: str | None, limit: int) -> list[JobEdge]:
        """The latest ``limit`` request transitions into or out of IN PROGRESS, oldest first."""

    def add_webhook(
        self, url: str, kinds: Sequence[str], secret: str, actor: str, now: datetime
    ) -> Webhook:
        """Register a webhook for the events after the newest one."""

    def webhooks(self, *, deleted: bool = False) -> list[Webhook]:
        """Active webhooks by id; with ``deleted`` the deleted ones too."""

    def delete_webhook(self, hook_id: int, actor: str, now: datetime) -> None:
        """Mark a webhook deleted, dropping its pending deliveries; ``NotFound`` if inactive."""

    def enqueue_deliveries(self, cursor: str, now: datetime, limit: int) -> tuple[int, int]:
        """Turn the transitions after cursor ``cursor`` into pending deliveries, moving it on;
        returns how many transitions were read and how many deliveries added."""

    def add_deliveries(
        self, cursor: str, events: Sequence[tuple[int, str]], now: datetime
    ) -> list[NewDelivery]:
        """Add pending deliveries of just-committed ``events`` (id, kind) for the active
        webhooks, moving cursor ``cursor`` past them; events at or before it are skipped.
        Returns the deliveries added, in event order."""

    def due_deliveries(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Pending deliveries due at ``now``, the earliest first."""

    def next_delivery_at(self, after: datetime | None = None) -> datetime | None:
        """When the earliest pending delivery is due (with ``after``: due later than it)."""

    def record_delivery(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        last_error: str,
        next_attempt_at: datetime | None,
        delivered_at: datetime | None = None,
    ) -> None:
        """Store the outcome of a delivery attempt."""

    def deliveries(self, hook_id: int, limit: int = 100) -> list[Delivery]:
        """The latest ``limit`` deliveries of a webhook, oldest first."""

    def write_failure(self) -> WriteFailure | None:
        """Why the latest write failed, unless a write has succeeded since."""
        ...

    def serving_epoch(self) -> int:
        """The serving epoch this store holds (docs/failover.md §standby); 0 when none."""
        ...

    def clock_offset(self) -> timedelta:
        """The database's clock minus this host's, while serving PostgreSQL; else zero."""
        ...

    def probe_write(self) -> None:
        """Commit one tiny write, to learn whether writes work again."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
