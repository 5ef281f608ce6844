"""Every foreign exception the store can meet becomes ``StoreUnavailable`` with a clear text."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from alembic.util import CommandError
from psycopg import errors as pg
from sqlalchemy import exc as sa_exc

from coordinator.errors import StoreUnavailable
from coordinator.store.boundary import (
    CORRUPT,
    FULL,
    LOCKED,
    READ_ONLY,
    UNREACHABLE,
    database_errors,
)


def _sqlite(cls: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    error = cls(message)
    error.sqlite_errorcode = code
    return error


DRIVER_ERRORS: list[tuple[BaseException, str]] = [
    (_sqlite(sqlite3.OperationalError, "database or disk is full", 13), FULL),
    (_sqlite(sqlite3.OperationalError, "attempt to write a readonly database", 8), READ_ONLY),
    (_sqlite(sqlite3.OperationalError, "readonly database moved", 8 | 4 << 8), READ_ONLY),
    (_sqlite(sqlite3.DatabaseError, "file is not a database", 26), CORRUPT),
    (_sqlite(sqlite3.DatabaseError, "database disk image is malformed", 11), CORRUPT),
    (_sqlite(sqlite3.OperationalError, "database is locked", 5), LOCKED),
    (_sqlite(sqlite3.OperationalError, "unable to open database file", 14), UNREACHABLE),
    (_sqlite(sqlite3.OperationalError, "disk I/O error", 10), "database error: disk I/O"),
    (pg.DiskFull("could not extend file"), FULL),
    (pg.ReadOnlySqlTransaction("cannot execute INSERT"), READ_ONLY),
    (pg.DataCorrupted("invalid page"), CORRUPT),
    (pg.IndexCorrupted("index is corrupt"), CORRUPT),
    (pg.AdminShutdown("terminating connection"), f"{UNREACHABLE}: terminating"),
    (pg.InvalidCatalogName('database "x" does not exist'), f"{UNREACHABLE}: database"),
    (pg.InvalidPassword("password authentication failed"), UNREACHABLE),
    (pg.OutOfMemory("out of memory"), "database is out of resources"),
    (psycopg.OperationalError("connection failed: refused\nmore"), f"{UNREACHABLE}: connection"),
    (pg.UndefinedTable('relation "requests" does not exist'), "database error 42P01"),
    (psycopg.InterfaceError("the connection is closed"), "database error: the connection"),
]


@pytest.mark.parametrize(("error", "message"), DRIVER_ERRORS)
def test_raw_driver_error_is_translated(error: BaseException, message: str) -> None:
    with pytest.raises(StoreUnavailable, match=f"^{message}") as caught, database_errors():
        raise error
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(("error", "message"), DRIVER_ERRORS)
def test_wrapped_driver_error_is_translated_without_parameters(
    error: BaseException, message: str
) -> None:
    wrapped = sa_exc.DBAPIError("INSERT …", {"token_hash": "s3cret"}, error, hide_parameters=True)
    with pytest.raises(StoreUnavailable, match=f"^{message}") as caught, database_errors():
        raise wrapped
    assert caught.value.__cause__ is wrapped
    assert "s3cret" not in caught.value.message


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (sa_exc.ArgumentError("bad URL"), "database error: bad URL"),
        (sa_exc.ResourceClosedError("closed"), "database error: closed"),
        (sa_exc.StatementError("bad", "SELECT", None, KeyError("k")), "database error: "),
        (CommandError("Can't locate revision"), "schema migration failed: Can't locate"),
    ],
)
def test_library_error_is_translated(error: Exception, message: str) -> None:
    with pytest.raises(StoreUnavailable, match=f"^{message}") as caught, database_errors():
        raise error
    assert caught.value.__cause__ is error


def test_programming_errors_pass_through() -> None:
    with pytest.raises(KeyError), database_errors():
        raise KeyError("not a database problem")


def test_bad_bind_value_is_reraised_as_itself() -> None:
    bad = ValueError("naive datetime")
    with pytest.raises(ValueError, match="naive") as caught, database_errors():
        raise sa_exc.StatementError("bind failed", "INSERT …", None, bad)
    assert caught.value is bad
