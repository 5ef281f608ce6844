"""The commit's rows as driver values, and the commit on SQLite: the job cycle's hot path,
without SQLAlchemy's per-statement work.

Every job cycle commits a few times, and SQLAlchemy Core's compile-cache lookup, parameter
processing and result set-up cost more CPU than SQLite's own work for rows this small.
Here each statement is plain SQL over the tables' columns, executed with the driver's
``executemany``; values are converted to what the columns hold (instants as microseconds,
JSON as text) the way ``tables.py``'s types do, so rows read back through SQLAlchemy are
the same. PostgreSQL's commit is in ``sql_commit_pg`` (docs/failover.md §round trips).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.model import Request, Transition, Worker
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.tables import from_micros, to_micros

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
JSON_COLUMNS: Final = frozenset({"groups", "caps", "host_keys"})


def _upsert(table: str, names: Sequence[str]) -> str:
    """INSERT of one row; a row whose key (the first column) exists is replaced."""
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[1:])
    marks = ", ".join("?" for _ in names)
    return (
        f"INSERT INTO {table} ({quoted(names)}) VALUES ({marks}) "
        f'ON CONFLICT ("{names[0]}") DO UPDATE SET {updates}'
    )


def quoted(names: Sequence[str]) -> str:
    # Quoted: "groups" is a keyword on PostgreSQL.
    return ", ".join(f'"{n}"' for n in names)


# SQLite's statements, built once.
UPSERT_REQUESTS: Final = _upsert("requests", REQUEST_COLUMNS)
UPSERT_WORKERS: Final = _upsert("workers", WORKER_COLUMNS)
DELETE_WORKER: Final = "DELETE FROM workers WHERE uuid = ?"
INSERT_TRANSITION: Final = (
    f"INSERT INTO transitions ({quoted(TRANSITION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TRANSITION_COLUMNS)})"
)
LARGEST_TRANSITION: Final = "SELECT max(id) FROM transitions"
ADD_USAGE: Final = "INSERT INTO usage (owner, value, at) VALUES (?, 0.0, 0) ON CONFLICT DO NOTHING"
READ_USAGE: Final = "SELECT value, at FROM usage WHERE owner = ?"
WRITE_USAGE: Final = "UPDATE usage SET value = ?, at = ? WHERE owner = ?"


class Fence(Protocol):
    """The serving lock's side of a write: which epoch to expect in the ``serving`` row,
    and the usage rows this holder wrote (nobody else writes them while it holds the lock:
    docs/failover.md §round trips)."""

    @property
    def epoch(self) -> int | None: ...

    @property
    def usage(self) -> dict[str, tuple[float, int]]: ...

    def verify(self, epoch: int, holder: str) -> None:
        """Raise ``FarmLost`` unless ``epoch`` is this holder's."""


UsageRow = tuple[float, int, str]  # an owner's usage row as rewritten: value, at, owner


def write_sqlite(
    dbapi: Any, changes: Changes, known: dict[str, tuple[float, int]] | None = None
) -> tuple[list[Numbered], list[UsageRow]]:
    """Apply ``changes`` on a SQLite connection inside its write transaction; returns the
    transitions as numbered and the usage rows rewritten.

    :param known: each owner's usage row (value, microseconds) as this holder last wrote
        it, while it holds the serving lock: such a row needs no read, see
        docs/failover.md §round trips. The caller adds the rows rewritten once durable.
    """
    cur = dbapi.cursor()
    rewritten: list[UsageRow] = []
    try:
        if changes.requests:
            cur.executemany(UPSERT_REQUESTS, [request_row(r) for r in changes.requests])
        if changes.workers:
            cur.executemany(UPSERT_WORKERS, [worker_row(w) for w in changes.workers])
        if changes.removed_workers:
            cur.executemany(DELETE_WORKER, [(uuid,) for uuid in changes.removed_workers])
        ids: list[int] = []
        if changes.transitions:
            rows = [transition_row(t) for t in changes.transitions]
            largest = cur.execute(LARGEST_TRANSITION).fetchone()[0] or 0
            if largest + len(rows) < LARGEST_ROWID:
                # SQLite gives a new row the largest rowid so far plus one, so under the
                # write lock one statement's rows get the ids after the largest one
                # (docs/events.md §fed from memory).
                cur.executemany(INSERT_TRANSITION, rows)
                ids = list(range(largest + 1, largest + len(rows) + 1))
            else:  # near the limit SQLite picks ids at random: ask for each one
                returning = f"{INSERT_TRANSITION} RETURNING id"
                ids = [cur.execute(returning, row).fetchone()[0] for row in rows]
        for owner, items in by_owner(changes.charges).items():
            stored = None if known is None else known.get(owner)
            if stored is None:
                cur.execute(ADD_USAGE, (owner,))
                stored = cur.execute(READ_USAGE, (owner,)).fetchone()
            rewritten.append(charged(owner, stored[0], stored[1], items))
            cur.execute(WRITE_USAGE, rewritten[-1])
    finally:
        cur.close()
    return numbered(ids, changes.transitions), rewritten


# The JSON texts of recent caps and lists of strings, by value: a worker's caps, groups and
# host keys stay the same through most of its changes, and requests ask for few sets of
# caps, while json.dumps costs more than the rest of a row. Only texts of strings are
# remembered (1, 1.0 and True are equal keys with different texts). Bounded: cleared when
# full.
_LISTS: Final[dict[tuple[str, ...], str]] = {}
_OBJECTS: Final[dict[tuple[tuple[str, str], ...], str]] = {}
_REMEMBERED: Final = 4096


def json_list(items: Sequence[str]) -> str:
    """``json.dumps(list(items))``."""
    if not items:
        return "[]"
    key = tuple(items)
    return _text(
        _LISTS, key, lambda: json.dumps(list(key)), lambda: all(type(i) is str for i in key)
    )


def json_object(value: Mapping[str, str]) -> str:
    """``json.dumps(dict(value))``."""
    key = tuple(value.items())
    return _text(
        _OBJECTS,
        key,
        lambda: json.dumps(dict(key)),
        lambda: all(type(k) is str and type(v) is str for k, v in key),
    )


def _text(
    texts: dict[Any, str], key: Any, encode: Callable[[], str], plain: Callable[[], bool]
) -> str:
    """The remembered text of ``key``, else ``encode()``'s, remembered when ``plain``."""
    try:
        text = texts.get(key)
    except TypeError:  # an item that cannot be hashed
        return encode()
    if text is None:
        text = encode()
        if plain():
            _remember(texts, key, text)
    return text


def _remember(texts: dict[Any, str], key: Any, text: str) -> None:
    if len(texts) >= _REMEMBERED:
        texts.clear()
    texts[key] = text


def request_row(r: Request) -> tuple[object, ...]:
    """A request as the driver values of the ``requests`` columns, in their order."""
    job = r.job
    return (
        r.id,
        r.priority,
        r.owner,
        json_list(r.groups),
        json_object(r.caps),
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
        json_object(w.caps),
        json_list(w.groups),
        to_micros(w.registered),
        to_micros(w.changed),
        w.ssh_address,
        w.reason,
        w.epoch,
        w.key,
        json_list(w.host_keys),
    )


def transition_row(t: Transition) -> tuple[object, ...]:
    """A transition as the driver values of the ``transitions`` columns but its id."""
    return (to_micros(t.at), t.kind, t.subject, t.old, t.new, t.reason, t.actor)


def by_owner(charges: Sequence[Charge]) -> dict[str, list[Charge]]:
    by_owner: dict[str, list[Charge]] = {}
    for item in charges:
        by_owner.setdefault(item.owner, []).append(item)
    return by_owner


def numbered(ids: list[int], done: Sequence[Transition]) -> list[Numbered]:
    return [Numbered(int(i), t) for i, t in zip(ids, done, strict=True)]


def charged(owner: str, value: float, at: int, items: list[Charge]) -> tuple[float, int, str]:
    """The parameters of the usage's rewrite: the owner's row, as read under the write
    lock, with its charges applied in order. Charges commute, so the order coordinators
    get here in is moot (docs/scheduling.md §fair share)."""
    new = Usage(owner, float(value), from_micros(at))
    for item in items:
        new = item.onto(new)
    return (new.value, to_micros(new.at), owner)
