"""The commit on PostgreSQL: the whole transaction as one text of a few multi-row statements,
sent in one message, so a commit costs the coordinator one round trip and one wake-up of
its committing thread, plus one more when jobs ended (docs/failover.md §round trips)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, Final

from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql_commit import (
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

# Rows per statement: a few fixed shapes keep each statement's text, and what the server
# parses at once, bounded.
CHUNK: Final = 256
FENCED: Final = "BF001"  # our own SQLSTATE: the serving row holds another holder's epoch
IDLE: Final = 0  # psycopg's pq.TransactionStatus.IDLE: no transaction open


def write_postgresql(dbapi: Any, changes: Changes, fence: Fence | None) -> list[Numbered]:
    """Apply ``changes`` on a psycopg connection and commit them: ``BEGIN``, the fence, the
    writes and ``COMMIT`` in one message, one round trip; when jobs ended, their owners'
    usage rows are read in it instead, and rewritten with the ``COMMIT`` in a second.

    :raises FarmLost: when ``fence`` finds another holder's epoch; nothing is kept.
    """
    items = by_owner(changes.charges)
    # Owners whose row this holder wrote last need no read (docs/failover.md §round trips).
    known = fence.usage if fence is not None and fence.epoch is not None else {}
    rewritten = [charged(o, *known[o], items[o]) for o in sorted(items.keys() & known.keys())]
    unread = sorted(items.keys() - known.keys())
    try:
        script, numbering = _script(changes, fence, rewritten, unread)
    except NoLiteral as exc:  # a value no literal can carry: nothing was sent
        raise StoreUnavailable(f"cannot store the change: {exc}") from exc
    # The literals are safe only in UTF-8 (see ``literal``): a session that was switched to
    # another encoding since it connected gets nothing of ours.
    if dbapi.pgconn.parameter_status(b"client_encoding") != b"UTF8":
        raise StoreUnavailable("cannot store the change: the session's encoding is not UTF-8")
    try:
        with _explicit_transaction(dbapi) as cur:
            found = _run(cur, script, [*numbering, len(script) - 1] if unread else numbering)
            if unread:
                read = [charged(o, v, at, items[o]) for o, v, at in found[len(script) - 1]]
                rewritten.extend(read)
                _run(cur, [*(_write_usage(row) for row in read), "COMMIT"], ())
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
    ids = [i for n in numbering for i in sorted(row[0] for row in found[n])]
    return numbered(ids, changes.transitions)


def _script(
    changes: Changes,
    fence: Fence | None,
    rewritten: list[tuple[float, int, str]],
    unread: list[str],
) -> tuple[list[str], range]:
    """The transaction's statements, and which of them number the transitions; with
    ``unread`` owners it ends with their usage rows' read instead of ``COMMIT``."""
    script = ["BEGIN"]
    if fence is not None and fence.epoch is not None:
        # First, so a new holder's fence waits for this transaction; a wrong epoch aborts
        # it, and the server skips the rest of the text (docs/failover.md §round trips).
        script.append(_fence(fence.epoch))
    script.extend(_upserts("requests", REQUEST_COLUMNS, [request_row(r) for r in changes.requests]))
    script.extend(_upserts("workers", WORKER_COLUMNS, [worker_row(w) for w in changes.workers]))
    if changes.removed_workers:
        gone = ", ".join(literal(uuid) for uuid in changes.removed_workers)
        script.append(f"DELETE FROM workers WHERE uuid IN ({gone})")
    first = len(script)
    script.extend(_inserts([transition_row(t) for t in changes.transitions]))
    numbering = range(first, len(script))
    script.extend(_write_usage(row) for row in rewritten)
    if unread:
        owners = ", ".join(literal(owner) for owner in unread)
        rows = ", ".join(f"({literal(owner)}, 0.0, 0)" for owner in unread)
        script.append(f"INSERT INTO usage (owner, value, at) VALUES {rows} ON CONFLICT DO NOTHING")
        script.append(
            f"SELECT owner, value, at FROM usage WHERE owner IN ({owners}) "
            "ORDER BY owner FOR UPDATE"
        )
    else:
        script.append("COMMIT")
    return script, numbering


@contextmanager
def _explicit_transaction(dbapi: Any) -> Iterator[Any]:
    """A cursor of ``dbapi`` in autocommit mode, for a text that opens and commits its own
    transaction: in its default mode psycopg would first send a ``BEGIN`` of its own and
    wait for its answer. Whatever happens, the transaction is closed and the connection
    goes back to the pool as it came; one that cannot is closed, so the pool drops it."""
    # psycopg refuses (a psycopg error: StoreUnavailable) on a connection inside a
    # transaction, or lost.
    dbapi.autocommit = True
    try:
        with dbapi.cursor() as cur:
            yield cur
    finally:
        try:
            if dbapi.pgconn.transaction_status != IDLE:
                dbapi.rollback()
            dbapi.autocommit = False
        except Exception:
            dbapi.close()  # no connection in autocommit mode may reach anyone else


def _run(cur: Any, script: Sequence[str], wanted: Sequence[int]) -> dict[int, list[Any]]:
    """Send ``script``'s statements as one text (the simple query protocol: one message,
    run in order, the rest skipped after an error, which psycopg raises) and return the
    rows of the statements in ``wanted``, by index."""
    cur.execute(";\n".join(script), prepare=False)
    rows: dict[int, list[Any]] = {}
    done = 0
    for n in wanted:
        while done < n:
            cur.nextset()
            done += 1
        rows[n] = cur.fetchall()
    return rows


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


class NoLiteral(ValueError):
    """A value no SQL literal can carry; other ValueErrors (a naive datetime) are bugs
    and stay what they are."""


def literal(value: object) -> str:
    """``value`` as an SQL literal that means it whatever the session's settings.

    Text is an escape string (``E'…'``, its quotes and backslashes doubled), so
    ``standard_conforming_strings`` cannot change what it means; the connection's client
    encoding is UTF-8 (coordinator/store/engine.py), in which no quote or backslash byte
    occurs inside another character.

    :raises NoLiteral: for text with a NUL character (PostgreSQL's text cannot hold one,
        and the protocol would end the message there), or a value of another type.
    """
    if value is None:
        return "NULL"
    if isinstance(value, str):
        if "\x00" in value:
            raise NoLiteral("PostgreSQL cannot store text with a NUL character")
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(float(value))
        return (
            f"'{'NaN' if math.isnan(value) else ('-' if value < 0 else '') + 'Infinity'}'::float8"
        )
    if isinstance(value, bytes):
        return f"decode('{value.hex()}', 'hex')"
    raise NoLiteral(f"no SQL literal for a value of type {type(value).__name__}")


def _row(row: tuple[object, ...]) -> str:
    return "(" + ", ".join([literal(value) for value in row]) + ")"


def _chunks(rows: list[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def _upserts(table: str, names: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    """INSERTs of ``rows``; a row whose key (the first column) exists is replaced."""
    head, tail = _upsert(table, names)
    return [head + ", ".join([_row(r) for r in chunk]) + tail for chunk in _chunks(rows)]


@cache
def _upsert(table: str, names: tuple[str, ...]) -> tuple[str, str]:
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[1:])
    return (
        f"INSERT INTO {table} ({quoted(names)}) VALUES ",
        f' ON CONFLICT ("{names[0]}") DO UPDATE SET {updates}',
    )


_INSERT_TRANSITIONS: Final = f"INSERT INTO transitions ({quoted(TRANSITION_COLUMNS)}) VALUES "


def _inserts(rows: list[tuple[object, ...]]) -> list[str]:
    return [
        _INSERT_TRANSITIONS + ", ".join([_row(r) for r in chunk]) + " RETURNING id"
        for chunk in _chunks(rows)
    ]


def _write_usage(row: tuple[float, int, str]) -> str:
    value, at, owner = row
    return (
        f"UPDATE usage SET value = {literal(value)}, at = {literal(at)} "
        f"WHERE owner = {literal(owner)}"
    )
