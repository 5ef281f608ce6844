"""``SqlStore``'s reads of requests beyond the start-up snapshot: the live ones and the
newest finished ones at start-up, then any one request, and the finished ones a listing
needs (docs/architecture.md §requests in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Row, and_, false, func, or_, select

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Job, KeyType, Request
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.store import IN_SQL, RequestQuery, Window, WindowRows
from coordinator.store.tables import requests

_FINAL: Final = sorted(s.value for s in FINAL_REQUEST_STATES)
# Longer ID or priority lists are matched here rather than in SQL (``RequestQuery.short``).
_INT32: Final = (-(2**31), 2**31 - 1)  # the priority column
_INT64: Final = 2**63 - 1  # the ID column


class SqlRequests:
    """Mixed into ``SqlStore``, which provides the transactions."""

    def _reading(self, *, check: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def request(self, rid: RequestID) -> Request | None:
        """One stored request, or ``None``."""
        with self._reading() as conn:
            row = conn.execute(select(requests).where(requests.c.id == rid)).first()
        return None if row is None else request_of(row)

    def finished_requests(self, query: RequestQuery) -> list[Request]:
        """The finished requests ``query`` selects, by ID."""
        c = requests.c
        states = sorted(s.value for s in query.states & FINAL_REQUEST_STATES)
        # Values no stored row can hold are left out of the SQL (a huge integer is an
        # error there, not a mismatch); a filter left empty by that matches nothing.
        ids = sorted(i for i in query.ids if 0 < i < query.below)
        priorities = sorted(p for p in query.priorities if _INT32[0] <= p <= _INT32[1])
        possible = bool(states) and (ids or not query.ids) and (priorities or not query.priorities)
        chosen: list[ColumnElement[bool]] = [c.id < query.below, c.state.in_(states)]
        if ids and len(ids) <= IN_SQL:
            chosen.append(c.id.in_(ids))
        if priorities and len(priorities) <= IN_SQL:
            chosen.append(c.priority.in_(priorities))
        selected = and_(*chosen) if possible else false()
        if query.anchor is not None and 0 < query.anchor <= _INT64:
            selected = or_(selected, c.id == query.anchor)
        with self._reading() as conn:
            rows = conn.execute(select(requests).where(selected).order_by(c.id)).all()
        found = [request_of(row) for row in rows]
        return [r for r in found if r.id == query.anchor or _matches(query, r)]

    def finished_window(self, query: RequestQuery, window: Window) -> WindowRows:
        """The finished requests ``query`` selects (the window's anchor left out), read
        one window at a time: counted in SQL, sorted there by the listing's columns."""
        c = requests.c
        chosen = _conditions(query)
        anchor = window.anchor
        if anchor is not None:
            chosen = and_(chosen, c.id != anchor.id)
        with self._reading() as conn:
            keys = _keys(window.order, conn.dialect.name, anchor)
            # Past the anchor on the window's side: after it, or before it going backward.
            later = window.descending == window.backward
            side = chosen if anchor is None else and_(chosen, _past(keys, later))
            order = [col.asc() if later else col.desc() for col, _ in keys]
            total = conn.execute(
                select(func.count()).select_from(requests).where(chosen)
            ).scalar_one()
            beyond = conn.execute(
                select(func.count()).select_from(requests).where(side)
            ).scalar_one()
            found = conn.execute(
                select(requests).where(side).order_by(*order).limit(window.limit)
            ).all()
        return WindowRows([request_of(row) for row in found], int(total), int(beyond))


def _conditions(query: RequestQuery) -> ColumnElement[bool]:
    """``query`` in SQL; its ID and priority lists must be ``short``."""
    c = requests.c
    states = sorted(s.value for s in query.states & FINAL_REQUEST_STATES)
    ids = sorted(i for i in query.ids if 0 < i < query.below)
    priorities = sorted(p for p in query.priorities if _INT32[0] <= p <= _INT32[1])
    if not states or (query.ids and not ids) or (query.priorities and not priorities):
        return false()
    chosen = [c.id < query.below, c.state.in_(states)]
    if ids:
        chosen.append(c.id.in_(ids))
    if priorities:
        chosen.append(c.priority.in_(priorities))
    return and_(*chosen)


# The columns each listing sort item compares, the ID last (domain/listing.py's keys).
_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "id": ("id",),
    "priority": ("priority", "id"),
    "deadline": ("deadline", "id"),
    "validafter": ("valid_after", "id"),
    "state": ("state", "id"),
}


def _keys(name: str, dialect: str, anchor: Request | None) -> list[tuple[Any, object]]:
    """The sort columns of ``name`` and the anchor's value in each. States compare as
    Python compares strings, code point by code point: PostgreSQL's "C" collation, and
    SQLite's own."""
    keys: list[tuple[Any, object]] = []
    for column in _ORDER[name]:
        col: Any = requests.c[column]
        if column == "state" and dialect == "postgresql":
            col = col.collate("C")
        value = None if anchor is None else getattr(anchor, column)
        keys.append((col, value.value if isinstance(value, RequestState) else value))
    return keys


def _past(keys: list[tuple[Any, object]], later: bool) -> ColumnElement[bool]:
    """Rows whose sort key is above (``later``) or below the anchor's."""
    (col, value), *rest = keys
    beyond = col > value if later else col < value
    if not rest:
        return beyond  # type: ignore[no-any-return]
    ((ident, rid),) = rest
    return or_(beyond, and_(col == value, ident > rid if later else ident < rid))


def load_requests(conn: Connection, finished: int | None) -> tuple[list[Request], int, int, int]:
    """The live requests and the ``finished`` finished ones with the highest IDs (all with
    ``None``), by ID; the next request ID and queue place; how many finished ones are left
    out."""
    c = requests.c
    if finished is None:
        rows: Sequence[Row[tuple[object, ...]]] = conn.execute(
            select(requests).order_by(c.id)
        ).all()
    else:
        live = conn.execute(select(requests).where(c.state.not_in(_FINAL))).all()
        newest = conn.execute(
            select(requests).where(c.state.in_(_FINAL)).order_by(c.id.desc()).limit(finished)
        ).all()
        rows = sorted([*live, *newest], key=lambda row: int(row._mapping["id"]))
    top_id, top_queued, total = conn.execute(
        select(func.max(c.id), func.max(c.queued), func.count())
    ).one()
    loaded = [request_of(row) for row in rows]
    return loaded, (top_id or 0) + 1, (top_queued or 0) + 1, int(total) - len(loaded)


def _matches(query: RequestQuery, req: Request) -> bool:
    return (
        req.id < query.below
        and req.state in query.states & FINAL_REQUEST_STATES
        and (not query.ids or req.id in query.ids)
        and (not query.priorities or req.priority in query.priorities)
    )


def request_values(r: Request) -> dict[str, object]:
    job = r.job
    return {
        "id": r.id,
        "priority": r.priority,
        "owner": r.owner,
        "groups": list(r.groups),
        "caps": dict(r.caps),
        "valid_after": r.valid_after,
        "deadline": r.deadline,
        "state": r.state.value,
        "created": r.created,
        "queued": r.queued,
        "job_worker": None if job is None else job.worker,
        "job_started": None if job is None else job.started,
        "job_timeout": None if job is None else job.timeout,
        "reason": r.reason,
        "key_type": r.key_type.value,
    }


def request_of(row: Row[tuple[object, ...]]) -> Request:
    m = row._mapping
    worker = m["job_worker"]
    return Request(
        id=RequestID(m["id"]),
        priority=m["priority"],
        owner=m["owner"],
        groups=tuple(m["groups"]),
        caps=m["caps"],
        valid_after=m["valid_after"],
        deadline=m["deadline"],
        state=RequestState(m["state"]),
        created=m["created"],
        queued=m["queued"],
        job=None
        if worker is None
        else Job(WorkerUUID(worker), started=m["job_started"], timeout=m["job_timeout"]),
        reason=m["reason"],
        key_type=KeyType(m["key_type"]),
    )
