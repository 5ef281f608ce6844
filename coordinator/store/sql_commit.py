"""The commit's writes as driver SQL built once per dialect: the job cycle's hot path,
without SQLAlchemy's per-statement work, and on PostgreSQL in one round trip.

Every job cycle commits a few times, and SQLAlchemy Core's compile-cache lookup, parameter
processing and result set-up cost more CPU than SQLite's own work for rows this small.
Here each statement is plain SQL over the tables' columns, executed with the driver's
``executemany``; values are converted to what the columns hold (instants as microseconds,
JSON as text) the way ``tables.py``'s types do, so rows read back through SQLAlchemy are
the same. On PostgreSQL the statements go in psycopg's pipeline mode: the transaction's
reads and writes leave together and their results come back in one round trip, instead
of one per statement (docs/failover.md §round trips).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Protocol

from sqlalchemy import Table

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.model import Request, Transition, Worker
from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.tables import from_micros, requests, to_micros, workers

LARGEST_ROWID: Final = 2**63 - 1  # past it SQLite picks new rowids at random


# The columns each row builder below fills, in its order; the key first. A test checks
# they are the tables' columns, so a new column cannot be left out unnoticed.
REQUEST_COLUMNS: Final = (
    "id",
    "priority",
    "owner",
    "groups",
    "caps",
    "valid_after",
    "deadline",
    "state",
    "created",
    "queued",
    "job_worker",
    "job_started",
    "job_timeout",
    "reason",
    "key_type",
)
WORKER_COLUMNS: Final = (
    "uuid",
    "state",
    "caps",
    "groups",
    "registered",
    "changed",
    "ssh_address",
    "reason",
    "epoch",
    "key",
    "host_keys",
)
TRANSITION_COLUMNS: Final = ("at", "kind", "subject", "old", "new", "reason", "actor")
_JSON_COLUMNS: Final = frozenset({"groups", "caps", "host_keys"})


class Fence(Protocol):
    """The serving lock's side of a write: which epoch to expect in the ``serving`` row."""

    @property
    def epoch(self) -> int | None: ...

    def verify(self, epoch: int, holder: str) -> None:
        """Raise ``FarmLost`` unless ``epoch`` is this holder's."""


@dataclass(frozen=True)
class Statements:
    """One dialect's statements; ``%s`` or ``?`` placeholders in the columns' order."""

    upsert_requests: str
    upsert_workers: str
    delete_worker: str
    insert_transition: str
    insert_transition_returning: str
    largest_transition: str
    fence: str
    add_usage: str
    read_usage: str
    write_usage: str


@cache
def statements(dialect: str) -> Statements:
    """The statements for ``sqlite`` or ``postgresql``."""
    if dialect not in ("sqlite", "postgresql"):  # pragma: no cover - database_url admits two
        raise StoreUnavailable(f"no commit statements for {dialect}")
    pg = dialect == "postgresql"
    mark = "%s" if pg else "?"
    # PostgreSQL takes a text parameter for a JSON column only with a cast.
    json_mark = "%s::json" if pg else "?"

    def upsert(table: Table, names: Sequence[str]) -> str:
        key = names[0]
        marks = ", ".join(json_mark if n in _JSON_COLUMNS else mark for n in names)
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[1:])
        return (
            f"INSERT INTO {table.name} ({_quoted(names)}) VALUES ({marks}) "
            f'ON CONFLICT ("{key}") DO UPDATE SET {updates}'
        )

    insert_transition = (
        f"INSERT INTO transitions ({_quoted(TRANSITION_COLUMNS)}) "
        f"VALUES ({', '.join(mark for _ in TRANSITION_COLUMNS)})"
    )
    return Statements(
        upsert_requests=upsert(requests, REQUEST_COLUMNS),
        upsert_workers=upsert(workers, WORKER_COLUMNS),
        delete_worker=f"DELETE FROM workers WHERE uuid = {mark}",
        insert_transition=insert_transition,
        insert_transition_returning=f"{insert_transition} RETURNING id",
        largest_transition="SELECT max(id) FROM transitions",
        fence="SELECT epoch, holder FROM serving WHERE id = 1 FOR SHARE",
        add_usage=(
            f"INSERT INTO usage (owner, value, at) VALUES ({mark}, 0.0, 0) "
            "ON CONFLICT (owner) DO NOTHING"
        ),
        read_usage=f"SELECT value, at FROM usage WHERE owner = {mark}"
        + (" FOR UPDATE" if pg else ""),
        write_usage=f"UPDATE usage SET value = {mark}, at = {mark} WHERE owner = {mark}",
    )


def write_sqlite(dbapi: Any, changes: Changes) -> list[Numbered]:
    """Apply ``changes`` on a SQLite connection inside its write transaction."""
    sql = statements("sqlite")
    cur = dbapi.cursor()
    try:
        _write_rows(cur, sql, changes)
        ids: list[int] = []
        if changes.transitions:
            rows = [transition_row(t) for t in changes.transitions]
            largest = cur.execute(sql.largest_transition).fetchone()[0] or 0
            if largest + len(rows) < LARGEST_ROWID:
                # SQLite gives a new row the largest rowid so far plus one, so under the
                # write lock one statement's rows get the ids after the largest one
                # (docs/events.md §fed from memory).
                cur.executemany(sql.insert_transition, rows)
                ids = list(range(largest + 1, largest + len(rows) + 1))
            else:  # near the limit SQLite picks ids at random: ask for each one
                ids = [
                    cur.execute(sql.insert_transition_returning, row).fetchone()[0] for row in rows
                ]
        for owner, items in _by_owner(changes.charges).items():
            cur.execute(sql.add_usage, (owner,))
            value, at = cur.execute(sql.read_usage, (owner,)).fetchone()
            _write_usage(cur, sql, owner, value, at, items)
    finally:
        cur.close()
    return _numbered(ids, changes.transitions)


def write_postgresql(dbapi: Any, changes: Changes, fence: Fence | None) -> list[Numbered]:
    """Apply ``changes`` on a psycopg connection, in its transaction: every statement but
    the usage's rewrite in one pipeline (one round trip), then that rewrite.

    :raises FarmLost: when ``fence`` finds another holder's epoch; nothing is kept, as the
        caller rolls the transaction back.
    """
    sql = statements("postgresql")
    charged = _by_owner(changes.charges)
    with dbapi.pipeline():
        # The fence's row lock comes first, so a new holder's fence waits for this
        # transaction as it did before (docs/failover.md §standby).
        fenced = dbapi.cursor() if fence is not None and fence.epoch is not None else None
        if fenced is not None:
            fenced.execute(sql.fence)
        writes = dbapi.cursor()
        _write_rows(writes, sql, changes)
        numbering = dbapi.cursor()
        if changes.transitions:
            rows = [transition_row(t) for t in changes.transitions]
            numbering.executemany(sql.insert_transition_returning, rows, returning=True)
        reads = {owner: dbapi.cursor() for owner in charged}
        for owner, cur in reads.items():
            writes.execute(sql.add_usage, (owner,))
            cur.execute(sql.read_usage, (owner,))
    if fenced is not None:
        assert fence is not None  # fenced is made only with a fence
        epoch, holder = fenced.fetchone()
        fence.verify(epoch, holder)
    ids: list[int] = []
    if changes.transitions:
        while True:
            ids.append(numbering.fetchone()[0])
            if not numbering.nextset():
                break
    if charged:
        with dbapi.pipeline():
            for owner, items in charged.items():
                value, at = reads[owner].fetchone()
                _write_usage(writes, sql, owner, value, at, items)
    return _numbered(ids, changes.transitions)


def request_row(r: Request) -> tuple[object, ...]:
    """A request as the driver values of the ``requests`` columns, in their order."""
    job = r.job
    return (
        r.id,
        r.priority,
        r.owner,
        json.dumps(list(r.groups)),
        json.dumps(dict(r.caps)),
        to_micros(r.valid_after),
        to_micros(r.deadline),
        r.state.value,
        to_micros(r.created),
        r.queued,
        None if job is None else job.worker,
        None if job is None else to_micros(job.started),
        None if job is None else to_micros(job.timeout),
        r.reason,
        r.key_type.value,
    )


def worker_row(w: Worker) -> tuple[object, ...]:
    """A worker as the driver values of the ``workers`` columns, in their order."""
    return (
        w.uuid,
        w.state.value,
        json.dumps(dict(w.caps)),
        json.dumps(list(w.groups)),
        to_micros(w.registered),
        to_micros(w.changed),
        w.ssh_address,
        w.reason,
        w.epoch,
        w.key,
        json.dumps(list(w.host_keys)),
    )


def transition_row(t: Transition) -> tuple[object, ...]:
    """A transition as the driver values of the ``transitions`` columns but its id."""
    return (to_micros(t.at), t.kind, t.subject, t.old, t.new, t.reason, t.actor)


def _quoted(names: Sequence[str]) -> str:
    # Quoted: "groups" is a keyword on PostgreSQL.
    return ", ".join(f'"{n}"' for n in names)


def _write_rows(cur: Any, sql: Statements, changes: Changes) -> None:
    """Upsert the requests and workers, then remove the removed workers."""
    if changes.requests:
        cur.executemany(sql.upsert_requests, [request_row(r) for r in changes.requests])
    if changes.workers:
        cur.executemany(sql.upsert_workers, [worker_row(w) for w in changes.workers])
    if changes.removed_workers:
        cur.executemany(sql.delete_worker, [(uuid,) for uuid in changes.removed_workers])


def _by_owner(charges: Sequence[Charge]) -> dict[str, list[Charge]]:
    by_owner: dict[str, list[Charge]] = {}
    for item in charges:
        by_owner.setdefault(item.owner, []).append(item)
    return by_owner


def _write_usage(
    cur: Any, sql: Statements, owner: str, value: float, at: int, items: list[Charge]
) -> None:
    """Rewrite an owner's usage row, read under the write lock, with its charges in order.
    Charges commute (docs/scheduling.md §fair share), so the order coordinators get here
    in is moot."""
    new = Usage(owner, float(value), from_micros(at))
    for item in items:
        new = item.onto(new)
    cur.execute(sql.write_usage, (new.value, to_micros(new.at), owner))


def _numbered(ids: list[int], done: Sequence[Transition]) -> list[Numbered]:
    return [Numbered(int(i), t) for i, t in zip(ids, done, strict=True)]
