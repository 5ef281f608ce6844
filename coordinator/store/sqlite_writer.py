"""The connection SQLite commits hold: checked out of the pool once and kept, so that a
commit is ``BEGIN IMMEDIATE``, the statements and ``COMMIT`` on the driver, without the
pool's checkout, SQLAlchemy's transaction and the reset's ``ROLLBACK`` at checkin
(docs/architecture.md §the commit on SQLite)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import PoolProxiedConnection

from coordinator.errors import StoreUnavailable
from coordinator.store import Changes
from coordinator.store.records import Numbered
from coordinator.store.sql_commit import write_sqlite


class SqliteWriter:
    """Commits on one connection of ``engine``'s pool, taken at the first commit and given
    up after any failure (the next commit takes a fresh one) or at :meth:`close`.

    The connection comes from the pool, so it is set up like every other one (WAL, the
    durability level, the lock wait: ``engine.py``), and a file made writable again after
    a read-only failure is opened anew. ``engine.dispose()`` renews it too, at the next
    commit, as it renews the pool's. Thread-safe: commits take turns on a lock.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held: PoolProxiedConnection | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._stale = False  # the engine was disposed of since the connection was taken
        event.listen(engine, "engine_disposed", self._disposed)

    def commit(
        self, changes: Changes, known: dict[str, tuple[float, int]] | None
    ) -> list[Numbered]:
        """Apply ``changes`` in one write transaction; ``known`` is what ``write_sqlite``
        takes, and gets the usage rows rewritten once they are durable.

        Raises what the driver or SQLAlchemy raised (the caller translates it), and
        ``StoreUnavailable`` once closed.
        """
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            if self._stale:
                self._stale = False
                self._drop()
            if self._held is None:
                self._held = self._engine.raw_connection()
            dbapi: Any = self._held.driver_connection
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                done, rewritten = write_sqlite(dbapi, changes, known)
                dbapi.execute("COMMIT")
            except BaseException:
                if known is not None:
                    known.clear()  # the commit's fate may be unknown: read them again
                # Closing the connection rolls back whatever it began; a new one starts
                # clean, and notices a file that became writable since.
                self._drop()
                raise
            if known is not None:
                known.update((owner, (value, at)) for value, at, owner in rewritten)
            return done

    def close(self) -> None:
        """Close the held connection, waiting for a commit in flight; idempotent."""
        with self._lock:
            self._closed = True
            self._drop()

    def _disposed(self, engine: Engine) -> None:
        self._stale = True  # not closed here: a commit may be using it in another thread

    def _drop(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.invalidate()  # closes the driver's connection; the pool forgets it
