"""A diagnostic for bench/coordinators.py: PostgreSQL's commit as it was until stop 24, a
psycopg pipeline of parameterised statements (one round trip, but a wait of the
committing thread per statement), to compare with the one-message commit that replaced it
(docs/failover.md §round trips) in the same run. Not the product's code."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, Final

from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql_commit import (
    JSON_COLUMNS,
    REQUEST_COLUMNS,
    TRANSITION_COLUMNS,
    WORKER_COLUMNS,
    Fence,
    by_owner,
    charged,
    numbered,
    quoted,
    request_row,
    transition_row,
    worker_row,
)

# Rows per statement: PostgreSQL takes at most 65,535 parameters in one, and a few fixed
# sizes keep the number of distinct statement texts (and server-side plans) small.
CHUNK: Final = 256
FENCED: Final = "BF001"  # our own SQLSTATE: the serving row holds another holder's epoch
DELETE_WORKERS: Final = "DELETE FROM workers WHERE uuid = ANY(%s)"
ADD_USAGE: Final = (
    "INSERT INTO usage (owner, value, at) SELECT unnest(%s::text[]), 0.0, 0 "
    "ON CONFLICT (owner) DO NOTHING"
)
READ_USAGE: Final = (
    "SELECT owner, value, at FROM usage WHERE owner = ANY(%s) ORDER BY owner FOR UPDATE"
)
WRITE_USAGE: Final = "UPDATE usage SET value = %s, at = %s WHERE owner = %s"


def write_pipelined(dbapi: Any, changes: Changes, fence: Fence | None) -> list[Numbered]:
    """Apply ``changes`` on a psycopg connection and commit them: the fence, the writes
    and the commit in one pipeline, one round trip; when jobs ended, their owners' usage
    rows are read in it instead, and rewritten with the commit in a second.

    :raises FarmLost: when ``fence`` finds another holder's epoch; nothing is kept.
    """
    items = by_owner(changes.charges)
    # Owners whose row this holder wrote last need no read (docs/failover.md §round trips).
    known = fence.usage if fence is not None and fence.epoch is not None else {}
    rewritten: list[tuple[float, int, str]] = []
    try:
        with dbapi.pipeline():
            writes = dbapi.cursor()
            if fence is not None and fence.epoch is not None:
                # First, so a new holder's fence waits for this transaction; a wrong
                # epoch aborts it, and the commit with it (docs/failover.md §round trips).
                writes.execute(_fence(fence.epoch))
            for chunk in _chunks([request_row(r) for r in changes.requests]):
                writes.execute(_upsert("requests", REQUEST_COLUMNS, len(chunk)), _flat(chunk))
            for chunk in _chunks([worker_row(w) for w in changes.workers]):
                writes.execute(_upsert("workers", WORKER_COLUMNS, len(chunk)), _flat(chunk))
            if changes.removed_workers:
                writes.execute(DELETE_WORKERS, (list(changes.removed_workers),))
            numbering = [dbapi.cursor() for _ in range(0, len(changes.transitions), CHUNK)]
            rows = [transition_row(t) for t in changes.transitions]
            for cur, chunk in zip(numbering, _chunks(rows), strict=True):
                cur.execute(_insert_transitions(len(chunk)), _flat(chunk))
            for owner in sorted(items.keys() & known.keys()):
                rewritten.append(charged(owner, *known[owner], items[owner]))
                writes.execute(WRITE_USAGE, rewritten[-1])
            unread = sorted(items.keys() - known.keys())
            read = dbapi.cursor() if unread else None
            if read is not None:
                writes.execute(ADD_USAGE, (unread,))
                read.execute(READ_USAGE, (unread,))
            else:
                dbapi.commit()  # in the pipeline: it waits for every statement before
        if read is not None:
            with dbapi.pipeline():
                for owner, value, at in read.fetchall():
                    rewritten.append(charged(owner, value, at, items[owner]))
                    writes.execute(WRITE_USAGE, rewritten[-1])
                dbapi.commit()
    except Exception as exc:
        known.clear()  # the commit's fate may be unknown: read the rows again next time
        if fence is not None and getattr(exc, "sqlstate", None) == FENCED:
            diag = getattr(exc, "diag", None)
            holder = getattr(diag, "message_primary", None) or ""
            fence.verify(int(getattr(diag, "message_detail", None) or 0), holder)
        raise
    if fence is not None and fence.epoch is not None:
        known.update((owner, (value, at)) for value, at, owner in rewritten)
    # Each statement's rows take the sequence's next ids in the order of its VALUES, so
    # its ids in ascending order are its rows' in order (docs/events.md §fed from memory).
    ids = [i for cur in numbering for i in sorted(row[0] for row in cur.fetchall())]
    return numbered(ids, changes.transitions)


def _fence(epoch: int) -> str:
    """A statement that takes the ``serving`` row's share lock and fails, with the SQLSTATE
    ``FENCED``, the holder as message and the epoch as detail, unless the row holds
    ``epoch``. The epoch is our own integer: formatting it in is safe."""
    return (
        "DO $$DECLARE e bigint; h text; BEGIN "
        "SELECT epoch, holder INTO e, h FROM serving WHERE id = 1 FOR SHARE; "
        f"IF e IS DISTINCT FROM {int(epoch)} THEN RAISE EXCEPTION USING "
        f"ERRCODE = '{FENCED}', MESSAGE = coalesce(h, ''), DETAIL = coalesce(e, 0)::text; "
        "END IF; END$$"
    )


def _chunks(rows: list[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def _flat(rows: list[tuple[object, ...]]) -> list[object]:
    return [value for row in rows for value in row]


def _values(names: Sequence[str], count: int) -> str:
    # PostgreSQL takes a text parameter for a JSON column only with a cast.
    one = "(" + ", ".join("%s::json" if n in JSON_COLUMNS else "%s" for n in names) + ")"
    return ", ".join(one for _ in range(count))


@lru_cache(maxsize=2 * CHUNK)
def _upsert(table: str, names: tuple[str, ...], count: int) -> str:
    """INSERT of ``count`` rows; a row whose key (the first column) exists is replaced."""
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[1:])
    return (
        f"INSERT INTO {table} ({quoted(names)}) VALUES {_values(names, count)} "
        f'ON CONFLICT ("{names[0]}") DO UPDATE SET {updates}'
    )


@lru_cache(maxsize=CHUNK)
def _insert_transitions(count: int) -> str:
    return (
        f"INSERT INTO transitions ({quoted(TRANSITION_COLUMNS)}) "
        f"VALUES {_values(TRANSITION_COLUMNS, count)} RETURNING id"
    )
