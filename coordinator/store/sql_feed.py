"""``SqlStore``'s event feed: numbered transitions, webhooks, deliveries and feed cursors."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Text,
    and_,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)

from coordinator.domain.model import SubjectKind, Transition
from coordinator.errors import NotFound
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
from coordinator.store.tables import (
    feed_cursors,
    requests,
    transitions,
    webhook_deliveries as deliveries,
    webhooks,
)

_KINDS: Final[dict[str, SubjectKind]] = {"request": "request", "worker": "worker"}
_IN_PROGRESS: Final = "IN PROGRESS"


class SqlFeed:
    """Mixed into ``SqlStore``, which provides the transactions."""

    def _reading(self, *, check: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _writing(self, *, check: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    # ---- transitions -------------------------------------------------------------------

    def last_transition_id(self) -> int:
        """The id of the newest transition, 0 when there is none."""
        with self._reading() as conn:
            return _last_id(conn)

    def transitions_after(
        self,
        after_id: int,
        limit: int,
        query: TransitionQuery = TransitionQuery(),  # noqa: B008 - frozen, so shareable
        *,
        latest: bool = False,
    ) -> list[Numbered]:
        """Matching transitions with an id above ``after_id``, oldest first: the first
        ``limit`` of them, or with ``latest`` the last ``limit``."""
        t = transitions.c
        order = t.id.desc() if latest else t.id
        stmt = select(transitions).where(t.id > after_id).order_by(order).limit(max(limit, 0))
        if query.kinds:
            stmt = stmt.where(t.kind.in_(sorted(query.kinds)))
        if query.subjects:
            stmt = stmt.where(t.subject.in_(sorted(query.subjects)))
        if query.states:
            states = sorted(query.states)
            stmt = stmt.where(or_(t.old.in_(states), t.new.in_(states)))
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        found = [_numbered(row) for row in rows]
        return found[::-1] if latest else found

    def job_edges(self, worker: str | None, limit: int) -> list[JobEdge]:
        """The latest ``limit`` request transitions into or out of IN PROGRESS, oldest first,
        of jobs on ``worker`` (or on any worker)."""
        t, r = transitions.c, requests.c
        stmt: Select[Any] = (
            select(transitions, r.owner, r.job_worker)
            .join(requests, and_(t.kind == "request", t.subject == cast(r.id, Text)))
            .where(or_(t.old == _IN_PROGRESS, t.new == _IN_PROGRESS))
            .order_by(t.id.desc())
            .limit(max(limit, 0))
        )
        if worker is not None:
            stmt = stmt.where(r.job_worker == worker)
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        return [JobEdge(_numbered(row), row.owner, row.job_worker or "") for row in reversed(rows)]

    # ---- webhooks ----------------------------------------------------------------------

    def add_webhook(
        self, url: str, kinds: Sequence[str], secret: str, actor: str, now: datetime
    ) -> Webhook:
        """Register a webhook for the events from now on."""
        with self._writing() as conn:
            since = _last_id(conn)
            values = {
                "url": url,
                "kinds": list(kinds),
                "secret": secret,
                "created_by": actor,
                "created_at": now,
                "since_event": since,
            }
            hook_id = conn.execute(insert(webhooks).returning(webhooks.c.id), values).scalar_one()
        return Webhook(int(hook_id), url, tuple(kinds), secret, actor, now, since)

    def webhooks(self, *, deleted: bool = False) -> list[Webhook]:
        """Active webhooks by id; with ``deleted`` the deleted ones too."""
        stmt = select(webhooks).order_by(webhooks.c.id)
        if not deleted:
            stmt = stmt.where(webhooks.c.deleted_at.is_(None))
        with self._reading() as conn:
            return [_webhook(row) for row in conn.execute(stmt).all()]

    def delete_webhook(self, hook_id: int, actor: str, now: datetime) -> None:
        """Mark a webhook deleted and drop its pending deliveries; ``NotFound`` if it is not
        active."""
        w = webhooks.c
        with self._writing() as conn:
            done = conn.execute(
                update(webhooks)
                .where(w.id == hook_id, w.deleted_at.is_(None))
                .values(deleted_by=actor, deleted_at=now)
            )
            if done.rowcount == 0:
                raise NotFound("Webhook")
            conn.execute(
                update(deliveries)
                .where(deliveries.c.hook_id == hook_id, deliveries.c.status == "pending")
                .values(status="dropped", last_error="webhook deleted", next_attempt_at=None)
            )

    # ---- deliveries ----------------------------------------------------------------------

    def enqueue_deliveries(self, cursor: str, now: datetime, limit: int) -> tuple[int, int]:
        """Read up to ``limit`` transitions after cursor ``cursor`` and add a pending delivery
        for each active webhook of its kind, moving the cursor in the same transaction.

        Nothing is read or written without webhooks; each webhook gets the events after
        its creation only.
        Returns how many transitions were read and how many deliveries were added.
        """
        active = webhooks.c.deleted_at.is_(None)
        with self._reading() as conn:
            # Without webhooks nothing is written: no extra commit per change for most farms.
            oldest = conn.execute(select(func.min(webhooks.c.since_event)).where(active)).scalar()
        if oldest is None:
            return 0, 0
        with self._writing() as conn:
            after = conn.execute(
                select(feed_cursors.c.last_id).where(feed_cursors.c.name == cursor)
            ).scalar()
            if after is None:
                conn.execute(insert(feed_cursors), {"name": cursor, "last_id": oldest})
            # Nothing before the oldest webhook is for anyone: skip a backlog left while
            # there were no webhooks.
            after = max(after or 0, oldest)
            rows = conn.execute(
                select(transitions.c.id, transitions.c.kind)
                .where(transitions.c.id > after)
                .order_by(transitions.c.id)
                .limit(limit)
            ).all()
            if not rows:
                return 0, 0
            hooks = conn.execute(
                select(webhooks.c.id, webhooks.c.kinds, webhooks.c.since_event).where(
                    webhooks.c.deleted_at.is_(None)
                )
            ).all()
            new = [
                {
                    "hook_id": hook.id,
                    "event_id": row.id,
                    "status": "pending",
                    "attempts": 0,
                    "last_error": "",
                    "next_attempt_at": now,
                    "delivered_at": None,
                }
                for row in rows
                for hook in hooks
                if row.kind in hook.kinds and row.id > hook.since_event
            ]
            if new:
                conn.execute(insert(deliveries), new)
            conn.execute(
                update(feed_cursors)
                .where(feed_cursors.c.name == cursor)
                .values(last_id=rows[-1].id)
            )
        return len(rows), len(new)

    def add_deliveries(
        self, cursor: str, events: Sequence[tuple[int, str]], now: datetime
    ) -> list[NewDelivery]:
        """Add a pending delivery of each of ``events`` (id and kind, oldest first, as just
        committed) for each active webhook of its kind that it came after, and move cursor
        ``cursor`` to the last of them, in one transaction; events at or before the cursor
        were handled already and are skipped. The transitions are not read.

        Returns the deliveries added, in event order, with what sending them needs.
        """
        if not events:
            return []
        with self._writing() as conn:
            w = webhooks.c
            hooks = conn.execute(
                select(w.id, w.kinds, w.since_event, w.url, w.secret)
                .where(w.deleted_at.is_(None))
                .order_by(w.id)
            ).all()
            if not hooks:
                return []  # nothing written without webhooks, as in ``enqueue_deliveries``
            oldest = min(int(hook.since_event) for hook in hooks)
            after = conn.execute(
                select(feed_cursors.c.last_id).where(feed_cursors.c.name == cursor)
            ).scalar()
            last = events[-1][0]
            if after is None:
                conn.execute(insert(feed_cursors), {"name": cursor, "last_id": last})
            elif after < last:
                conn.execute(
                    update(feed_cursors).where(feed_cursors.c.name == cursor).values(last_id=last)
                )
            start = max(after or 0, oldest)
            wanted = [
                (event_id, hook)
                for event_id, kind in events
                if event_id > start
                for hook in hooks
                if kind in hook.kinds and event_id > hook.since_event
            ]
            if not wanted:
                return []
            rows = [
                {
                    "hook_id": hook.id,
                    "event_id": event_id,
                    "status": "pending",
                    "attempts": 0,
                    "last_error": "",
                    "next_attempt_at": now,
                    "delivered_at": None,
                }
                for event_id, hook in wanted
            ]
            stmt = insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True)
            ids = conn.execute(stmt, rows).scalars().all()
        return [
            NewDelivery(
                Delivery(int(i), hook.id, event_id, "pending", 0, "", now, None),
                hook.url,
                hook.secret,
            )
            for i, (event_id, hook) in zip(ids, wanted, strict=True)
        ]

    def due_deliveries(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Pending deliveries due at ``now``, the earliest first."""
        d = deliveries.c
        stmt = (
            select(deliveries, webhooks.c.url, webhooks.c.secret, transitions)
            .join(webhooks, webhooks.c.id == d.hook_id)
            .join(transitions, transitions.c.id == d.event_id)
            .where(d.status == "pending", d.next_attempt_at <= now)
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
        )
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        return [DueDelivery(_delivery(row), row.url, row.secret, _numbered(row)) for row in rows]

    def next_delivery_at(self, after: datetime | None = None) -> datetime | None:
        """When the earliest pending delivery is due; with ``after``, the earliest due
        later than that."""
        d = deliveries.c
        stmt = select(func.min(d.next_attempt_at)).where(d.status == "pending")
        if after is not None:
            stmt = stmt.where(d.next_attempt_at > after)
        with self._reading() as conn:
            when: datetime | None = conn.execute(stmt).scalar()
        return when

    def record_delivery(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        last_error: str,
        next_attempt_at: datetime | None,
        delivered_at: datetime | None = None,
    ) -> None:
        """Store the outcome of an attempt."""
        with self._writing() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    status=status,
                    attempts=attempts,
                    last_error=last_error,
                    next_attempt_at=next_attempt_at,
                    delivered_at=delivered_at,
                )
            )

    def deliveries(self, hook_id: int, limit: int = 100) -> list[Delivery]:
        """The latest ``limit`` deliveries of a webhook, oldest first."""
        stmt = (
            select(deliveries)
            .where(deliveries.c.hook_id == hook_id)
            .order_by(deliveries.c.id.desc())
            .limit(limit)
        )
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        return [_delivery(row) for row in reversed(rows)]


def _last_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(transitions.c.id), 0))).scalar_one())


def _numbered(row: Row[Any]) -> Numbered:
    m = row._mapping
    transition = Transition(
        at=m[transitions.c.at],
        kind=_KINDS[m[transitions.c.kind]],
        subject=m[transitions.c.subject],
        old=m[transitions.c.old],
        new=m[transitions.c.new],
        reason=m[transitions.c.reason],
        actor=m[transitions.c.actor],
    )
    return Numbered(int(m[transitions.c.id]), transition)


def _webhook(row: Row[Any]) -> Webhook:
    m = row._mapping
    return Webhook(
        id=int(m["id"]),
        url=m["url"],
        kinds=tuple(m["kinds"]),
        secret=m["secret"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        since_event=int(m["since_event"]),
        deleted_by=m["deleted_by"],
        deleted_at=m["deleted_at"],
    )


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    d = deliveries.c
    return Delivery(
        id=int(m[d.id]),
        hook_id=int(m[d.hook_id]),
        event_id=int(m[d.event_id]),
        status=m[d.status],
        attempts=int(m[d.attempts]),
        last_error=m[d.last_error],
        next_attempt_at=m[d.next_attempt_at],
        delivered_at=m[d.delivered_at],
    )
