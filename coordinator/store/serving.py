"""The serving lock: at most one coordinator serves a database at a time.

A serving coordinator keeps the queue in memory and hands out request IDs from it, so a
second one on the same database would re-issue IDs and never see the first one's
requests. Until coordinators share a database safely, ``serve`` takes this lock first
and a second one refuses to start. On PostgreSQL it is a session advisory lock held by
one dedicated connection; on SQLite, an ``flock`` on the database file (independent of
SQLite's own POSIX locks on Linux, so it never blocks a query).
"""

from __future__ import annotations

import fcntl
import os
from typing import Final

from sqlalchemy import Connection, Engine, text

from coordinator.errors import StoreUnavailable
from coordinator.store.boundary import database_errors

# Any fixed number other than the migration lock's: "bsrv".
SERVING_LOCK_KEY: Final = 0x62737276


class ServingLock:
    """Held from :meth:`claim` until :meth:`release` (or the process's end)."""

    def __init__(self, conn: Connection | None, fd: int | None) -> None:
        self._conn = conn
        self._fd = fd

    @classmethod
    def claim(cls, engine: Engine, sqlite_path: str | None, shown: str) -> ServingLock:
        """Take the lock of the database behind ``engine``.

        :param sqlite_path: the SQLite file, or None for PostgreSQL.
        :param shown: the database as the message names it (no password).
        :raises StoreUnavailable: when another coordinator serves it, or on failure.
        """
        if sqlite_path is not None:
            return cls(None, _flock(sqlite_path, shown))
        with database_errors():
            conn = engine.connect()
            try:
                taken = conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": SERVING_LOCK_KEY}
                ).scalar_one()
                conn.commit()
            except BaseException:
                conn.close()
                raise
        if not taken:
            conn.close()
            raise StoreUnavailable(_taken(shown))
        return cls(conn, None)

    def release(self) -> None:
        """Let another coordinator serve the database; idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # Ending the session ends the advisory lock; invalidating closes the driver's
            # connection now instead of returning it to a pool that may keep it open.
            with database_errors():
                conn.invalidate()
                conn.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _flock(path: str, shown: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open {shown} to lock it: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreUnavailable(_taken(shown)) from None
    except OSError as exc:
        os.close(fd)
        raise StoreUnavailable(f"cannot lock {shown}: {exc.strerror}") from exc
    return fd


def _taken(shown: str) -> str:
    return (
        f"another coordinator is already serving {shown}; one database has one serving "
        "coordinator (README.md, 'Several coordinators'): stop the other one, or give "
        "this one its own database"
    )
