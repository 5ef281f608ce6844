"""The store's error boundary: database driver errors become ``StoreUnavailable``."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from alembic.util import CommandError
from sqlalchemy import exc as sa_exc

from coordinator.errors import BorutaError, StoreUnavailable

try:
    from psycopg import Error as _PsycopgError

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, _PsycopgError)
except ImportError:  # pragma: no cover - PostgreSQL support is the optional "postgres" extra
    _DRIVER_ERRORS = (sqlite3.Error,)

FULL: Final = "database is full"
READ_ONLY: Final = "database is read-only"
CORRUPT: Final = "database file is corrupt or not a database"
UNREACHABLE: Final = "cannot reach the database"
LOCKED: Final = "database is locked by another process"

# Primary SQLite result codes (the low byte of an extended code), from sqlite3.h.
_SQLITE_MESSAGES: Final = {
    3: READ_ONLY,  # SQLITE_PERM
    5: LOCKED,  # SQLITE_BUSY
    6: LOCKED,  # SQLITE_LOCKED
    8: READ_ONLY,  # SQLITE_READONLY
    11: CORRUPT,  # SQLITE_CORRUPT
    13: FULL,  # SQLITE_FULL
    26: CORRUPT,  # SQLITE_NOTADB
}
_SQLITE_CANTOPEN: Final = 14

# PostgreSQL SQLSTATEs (Appendix A of its manual): exact codes first, then classes.
_PG_MESSAGES: Final = {
    "53100": FULL,  # disk_full
    "25006": READ_ONLY,  # read_only_sql_transaction
    "XX001": CORRUPT,  # data_corrupted
    "XX002": CORRUPT,  # index_corrupted
    "55P03": LOCKED,  # lock_not_available
    "3D000": UNREACHABLE,  # invalid_catalog_name: the database does not exist
}
_PG_CLASSES: Final = {
    "08": UNREACHABLE,  # connection_exception
    "28": UNREACHABLE,  # invalid_authorization_specification
    "57": UNREACHABLE,  # operator_intervention: shutdown, cannot connect now
    "53": "database is out of resources",  # insufficient_resources besides a full disk
}


@contextmanager
def database_errors(sqlite_path: str | None = None) -> Iterator[None]:
    """Translate what SQLAlchemy, Alembic, sqlite3 and psycopg raise into ``StoreUnavailable``.

    Our own errors (``Conflict``, ``NotFound``, ``StoreUnavailable``) pass through.

    :param sqlite_path: the SQLite file, to tell a read-only file system from a missing
        directory when SQLite only says it cannot open the file.
    :raises StoreUnavailable: with a message naming the cause, chained to the original.
    """
    try:
        yield
    except BorutaError:
        raise
    except sa_exc.DBAPIError as exc:
        raise StoreUnavailable(describe(exc.orig or exc, sqlite_path)) from exc
    except _DRIVER_ERRORS as exc:
        raise StoreUnavailable(describe(exc, sqlite_path)) from exc
    except sa_exc.StatementError as exc:
        # A bind value the code should never have passed (a naive datetime): a bug to see
        # as it is, not a database outage.
        if isinstance(exc.orig, ValueError | TypeError):
            raise exc.orig from exc
        raise StoreUnavailable(f"database error: {_first_line(exc)}") from exc
    except sa_exc.SQLAlchemyError as exc:
        # Not from the driver: a closed pool, a bad URL, a missing dialect module.
        raise StoreUnavailable(f"database error: {_first_line(exc)}") from exc
    except CommandError as exc:
        raise StoreUnavailable(f"schema migration failed: {_first_line(exc)}") from exc


def describe(error: BaseException, sqlite_path: str | None = None) -> str:
    """The message for a driver exception; never the SQL or its parameters."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _describe_sqlite(code & 0xFF, error, sqlite_path)
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        message = _PG_MESSAGES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
        if message == UNREACHABLE:
            return f"{UNREACHABLE}: {_first_line(error)}"
        if message:
            return message
        return f"database error {sqlstate}: {_first_line(error)}"
    if _is_operational(error):
        # psycopg raises OperationalError without a SQLSTATE when the connection fails.
        return f"{UNREACHABLE}: {_first_line(error)}"
    return f"database error: {_first_line(error)}"


def _describe_sqlite(code: int, error: BaseException, path: str | None) -> str:
    if code == _SQLITE_CANTOPEN:
        # SQLite says "unable to open database file" for a read-only directory (WAL needs
        # to create its -wal and -shm files) as well as for a missing one.
        if path and os.path.exists(path) and not _writable(path):
            return f"{READ_ONLY}: {path}"
        return f"{UNREACHABLE}: {_first_line(error)}" + (f" ({path})" if path else "")
    return _SQLITE_MESSAGES.get(code) or f"database error: {_first_line(error)}"


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)


def _is_operational(error: BaseException) -> bool:
    # Every DB-API driver names its connection-level error class OperationalError.
    return any(cls.__name__ == "OperationalError" for cls in type(error).__mro__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
