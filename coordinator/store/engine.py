"""The SQLAlchemy engine of a store: the URL of a path or URL, and each connection's set-up
(SQLite's WAL, durability and lock wait; PostgreSQL's timeouts and keepalives)."""

from __future__ import annotations

import os
import sqlite3
import time
from functools import partial
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, create_engine, event, exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from coordinator.errors import StoreUnavailable

SqliteSync = Literal["FULL", "NORMAL"]

PING_AFTER_IDLE: Final = 1.0  # seconds a pooled connection sits idle before a ping
_USED: Final = "boruta_used"  # when a pooled connection was last given back

# Marks the engine that write transactions use: on SQLite they start with BEGIN IMMEDIATE.
WRITE: Final = "boruta_write"


def database_url(url_or_path: str | os.PathLike[str]) -> URL:
    """The SQLAlchemy URL for a path or URL, with PostgreSQL pinned to psycopg 3.

    :raises ValueError: for an unsupported database or an in-memory SQLite database.
    """
    text_ = os.fspath(url_or_path)
    if "://" not in text_:
        return URL.create("sqlite+pysqlite", database=os.path.abspath(text_))
    try:
        url = make_url(text_)
    except sa_exc.ArgumentError as exc:
        raise ValueError(f"cannot parse the database URL: {exc}") from None
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if url.database in (None, "", ":memory:"):
            raise ValueError("an in-memory SQLite database would lose every request")
        return url
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL {url.render_as_string(hide_password=True)}")


def create(
    url: URL, sqlite_sync: SqliteSync, busy_timeout: float, connect_timeout: float
) -> Engine:
    # hide_parameters keeps token hashes and worker keys out of exception texts and logs.
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, hide_parameters=True)
        _sqlite_pragmas(engine, sqlite_sync, busy_timeout)
        return engine
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "boruta-coordinator",
            # The commit writes its values as literals, safe in UTF-8 (sql_commit_pg.py).
            "client_encoding": "utf8",
            # A server that went silent (a cut cable) fails the waiting query within
            # seconds instead of the system's TCP default of hours
            # (docs/failover.md §standby).
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        },
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout when it sat idle for ``PING_AFTER_IDLE``
    seconds, and replace it if the ping fails: a restarted server leaves dead connections
    in the pool. A connection back within that time proved alive a moment ago, and a ping
    would cost every busy transaction a round trip (docs/failover.md §round trips)."""

    def checkin(dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info[_USED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: object) -> None:
        used = record.info.get(_USED)
        if used is None or time.monotonic() - used < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool makes a new connection and tries again
            raise sa_exc.DisconnectionError("a pooled connection is dead") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _sqlite_pragmas(engine: Engine, sync: SqliteSync, busy_timeout: float) -> None:
    """Set WAL, the durability level, the lock wait and foreign keys on each connection."""
    event.listen(
        engine, "connect", partial(_sqlite_connect, sync=sync, busy_ms=round(busy_timeout * 1000))
    )
    event.listen(engine, "begin", _sqlite_begin)


def _sqlite_connect(
    dbapi_connection: sqlite3.Connection,
    connection_record: ConnectionPoolEntry,
    *,
    sync: SqliteSync,
    busy_ms: int,
) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot BEGIN IMMEDIATE, so turn
    # it off and let _sqlite_begin issue the BEGIN (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreUnavailable(f"cannot put the SQLite database in WAL mode ({mode})")
        cursor.execute(f"PRAGMA synchronous = {sync}")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front: a deferred transaction that reads first and
    # then writes can fail with SQLITE_BUSY without waiting when another writer got there.
    mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
