"""``SqlStore``'s reads of requests beyond the start-up snapshot: the live ones and the
newest finished ones at start-up, then any one request, and the finished ones a listing
needs (docs/architecture.md §requests in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Final

from sqlalchemy import ColumnElement, Connection, Row, and_, false, func, or_, select

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Job, Request
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.store import RequestQuery
from coordinator.store.tables import requests

_FINAL: Final = sorted(s.value for s in FINAL_REQUEST_STATES)
# Longer ID or priority lists are matched here rather than in SQL: a statement has at most
# 32,766 parameters on SQLite and 65,535 on PostgreSQL, and a list body may hold more.
_IN_SQL: Final = 500
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
        if ids and len(ids) <= _IN_SQL:
            chosen.append(c.id.in_(ids))
        if priorities and len(priorities) <= _IN_SQL:
            chosen.append(c.priority.in_(priorities))
        selected = and_(*chosen) if possible else false()
        if query.anchor is not None and 0 < query.anchor <= _INT64:
            selected = or_(selected, c.id == query.anchor)
        with self._reading() as conn:
            rows = conn.execute(select(requests).where(selected).order_by(c.id)).all()
        found = [request_of(row) for row in rows]
        return [r for r in found if r.id == query.anchor or _matches(query, r)]


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
    )
