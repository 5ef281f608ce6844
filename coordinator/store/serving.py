"""The serving lock: one coordinator serves a database at a time; others wait as standbys.

A serving coordinator keeps the queue in memory and hands out request IDs from it, so a
second one serving the same database would re-issue IDs and never see the first one's
requests. ``serve`` takes this lock first (docs/failover.md §standby):
- On PostgreSQL it is a session advisory lock held by one dedicated connection. A second
  coordinator waits as a standby until the session of the first ends: its process died,
  or the server dropped it (keepalives on that session bound how long a silent peer
  keeps it). Each new holder raises the epoch in the ``serving`` row; every write of a
  holder checks its epoch under a row lock, so a coordinator that lost the lock (say,
  cut off from the database while another took over) never writes again.
- On SQLite it is an ``flock`` on the database file (independent of SQLite's own POSIX
  locks on Linux, so it never blocks a query); a second coordinator is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Final

from sqlalchemy import Connection, Engine, select, text, update

from coordinator.errors import FarmLost, ServingTaken, StoreUnavailable
from coordinator.store.boundary import database_errors
from coordinator.store.tables import serving

logger = logging.getLogger(__name__)

# Any fixed number other than the migration lock's: "bsrv".
SERVING_LOCK_KEY: Final = 0x62737276
# How soon PostgreSQL drops the lock of a holder that went silent (power lost, cable cut):
# keepalive probes after 2 s idle, every 1 s, 3 unanswered end it; unacknowledged data
# for 5 s ends it too. Session settings, so they need no change to the server's config.
_LOCK_SESSION: Final = (
    "SET tcp_keepalives_idle = 2",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 5000",
)


# Offsets from the database's clock that are not worth following: a round trip's jitter.
_JITTER: Final = timedelta(milliseconds=100)
_SKEW_TOLD: Final = timedelta(seconds=1)  # a larger offset is logged


class Lease(Enum):
    """What a holder knows of its lock after a check."""

    HELD = "held"
    UNKNOWN = "unknown"  # the database cannot be reached: nobody can write, this one neither
    LOST = "lost"  # another coordinator took the database over


class ServingLock:
    """Held from :meth:`claim` until :meth:`release` (or the process's end)."""

    def __init__(
        self,
        conn: Connection | None,
        fd: int | None,
        engine: Engine | None = None,
        peer_url: str = "",
    ) -> None:
        self._conn = conn
        self._fd = fd
        self._engine = engine
        self.epoch: int | None = None  # on PostgreSQL, once fenced: this holder's epoch
        self.peer_url = peer_url  # recorded with the epoch: where the others forward to
        self.lost = False
        # The database's clock minus this host's, as last measured on the lock's session.
        self.offset = timedelta(0)
        # Each owner's usage row (value, microseconds) as this holder's commits last wrote
        # it: while it holds the lock no one else writes one, so a commit needs no read
        # for them (docs/failover.md §round trips). A new holder starts with none.
        self.usage: dict[str, tuple[float, int]] = {}

    @classmethod
    def claim(
        cls,
        engine: Engine,
        sqlite_path: str | None,
        shown: str,
        holder: str = "",
        peer_url: str = "",
    ) -> ServingLock:
        """Take the lock of the database behind ``engine``.

        :param sqlite_path: the SQLite file, or None for PostgreSQL.
        :param shown: the database as the message names it (no password).
        :param peer_url: where the other coordinators reach this one's HTTP API.
        :raises ServingTaken: when another coordinator serves it.
        :raises StoreUnavailable: on failure.
        """
        if sqlite_path is not None:
            return cls(None, _flock(sqlite_path, shown))
        conn = _locked(engine)
        if conn is None:
            raise ServingTaken(_standing_by(engine, shown, holder))
        lock = cls(conn, None, engine, peer_url)
        try:
            lock._follow(conn)
        except BaseException:
            lock.release()
            raise
        return lock

    def fence(self, holder: str) -> None:
        """Raise the epoch (once the schema has the ``serving`` row) and record where this
        holder is reached: writes of every earlier holder are refused from now on. Waits
        for those in flight to commit."""
        if self._conn is None or self.epoch is not None:
            return
        with database_errors():
            self.epoch = self._conn.execute(
                update(serving)
                .where(serving.c.id == 1)
                .values(epoch=serving.c.epoch + 1, holder=holder, peer_url=self.peer_url)
                .returning(serving.c.epoch)
            ).scalar_one()
            self._conn.commit()

    def check_write(self, conn: Connection) -> None:
        """In a write transaction: refuse it unless this holder's epoch is current. The row
        lock keeps a new holder's :meth:`fence` waiting until the transaction ends.

        :raises FarmLost: when another coordinator has taken the database over.
        """
        if self.epoch is None:
            return
        current = conn.execute(
            select(serving.c.epoch, serving.c.holder)
            .where(serving.c.id == 1)
            .with_for_update(read=True)
        ).one()
        self.verify(current.epoch, current.holder)

    def verify(self, epoch: int, holder: str) -> None:
        """Refuse a write that read ``epoch`` and ``holder`` in the ``serving`` row, unless
        the epoch is this holder's.

        :raises FarmLost: when another coordinator has taken the database over.
        """
        if epoch != self.epoch:
            self.lost = True
            raise FarmLost(f"{holder or 'another coordinator'} serves this database now")

    def check(self) -> Lease:
        """Is the lock still this holder's? Re-takes it after the session was lost (the
        server restarted), unless another holder has raised the epoch since."""
        if self.lost:
            return Lease.LOST
        if self._conn is None:
            return Lease.HELD  # SQLite: the flock lasts as long as the process
        try:
            self._follow(self._conn)
            return Lease.HELD
        except StoreUnavailable:
            pass
        return self._retake()

    def _follow(self, conn: Connection) -> None:
        """Measure the database's clock against this host's; follow a change past jitter.

        :raises StoreUnavailable: when the session does not answer.
        """
        with database_errors():
            before = datetime.now(UTC)
            theirs: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            after = datetime.now(UTC)
            conn.commit()
        offset = theirs - (before + (after - before) / 2)
        if abs(offset - self.offset) > _JITTER:
            if abs(offset) > _SKEW_TOLD or abs(self.offset) > _SKEW_TOLD:
                logger.warning(
                    "this host's clock is %+.1f s off the database's: the coordinator keeps "
                    "the database's time (docs/failover.md §standby)",
                    -offset.total_seconds(),
                )
            self.offset = offset

    def _retake(self) -> Lease:
        assert self._engine is not None and self._conn is not None
        _drop(self._conn)
        try:
            conn = _locked(self._engine)
        except StoreUnavailable:
            return Lease.UNKNOWN
        if conn is None:
            self.lost = True
            return Lease.LOST
        try:
            with database_errors():
                epoch = conn.execute(
                    select(serving.c.epoch).where(serving.c.id == 1)
                ).scalar_one_or_none()
                conn.commit()
            self._follow(conn)
        except StoreUnavailable:
            _drop(conn)  # a session that holds the lock must not outlive this attempt
            return Lease.UNKNOWN
        self._conn = conn
        if self.epoch is not None and epoch != self.epoch:
            self.lost = True
            return Lease.LOST
        return Lease.HELD

    def release(self) -> None:
        """Let another coordinator serve the database; idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            _drop(conn)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


@dataclass(frozen=True)
class Serving:
    """Who serves a database, as ``boruta-coordinator serving`` tells an admin."""

    served: bool  # a coordinator holds the serving lock now
    holder: str  # the last holder that raised the epoch ("" on SQLite, or never served)
    epoch: int
    # Where that holder's HTTP API is reached by the other coordinators (its peer_url
    # setting; "" on SQLite, or when it has not fenced yet): docs/failover.md §scale-out.
    peer_url: str = ""


def who_serves(engine: Engine, sqlite_path: str | None) -> Serving:
    """Whether the serving lock is held now, and by whom it was last taken."""
    if sqlite_path is not None:
        try:
            fd = _flock(sqlite_path, sqlite_path)
        except ServingTaken:
            return Serving(True, "", 0)
        os.close(fd)
        return Serving(False, "", 0)
    with database_errors(), engine.connect() as conn:
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": SERVING_LOCK_KEY},
        ).scalar_one()
        row = conn.execute(select(serving.c.holder, serving.c.epoch, serving.c.peer_url)).first()
    if row is None:
        return Serving(held > 0, "", 0)
    return Serving(held > 0, row.holder, row.epoch, row.peer_url)


def peer_secret(engine: Engine) -> str:
    """The farm's peer secret (hex), made by the migration; "" before it ran. Callers keep
    it out of logs: with it, anyone may speak for any client (docs/failover.md §scale-out).

    :raises StoreUnavailable: on failure.
    """
    with database_errors(), engine.connect() as conn:
        found = conn.execute(select(serving.c.peer_secret).where(serving.c.id == 1)).first()
    return found.peer_secret if found is not None else ""


def _locked(engine: Engine) -> Connection | None:
    """A session holding the serving lock, or None when another session holds it.

    The try is made on a pooled session, which goes back to the pool when it did not get
    the lock (it holds nothing): a standby tries every 0.5 s, and a new session each time
    cost a connection, and a server process forked, per try."""
    taken = False
    with database_errors():
        conn = engine.connect()
        try:
            taken = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": SERVING_LOCK_KEY}
            ).scalar_one()
            if taken:  # this session is the lock now: out of the pool for good
                for setting in _LOCK_SESSION:
                    conn.execute(text(setting))
            conn.commit()
        except BaseException:
            if taken:
                _drop(conn)
            else:
                conn.close()
            raise
    if not taken:
        conn.close()
        return None
    return conn


def _drop(conn: Connection) -> None:
    # Ending the session ends the advisory lock; invalidating closes the driver's
    # connection now instead of returning it to a pool that may keep it open.
    try:
        with database_errors():
            conn.invalidate()
            conn.close()
    except StoreUnavailable:
        pass  # a connection already broken is closed enough


def _standing_by(engine: Engine, shown: str, own: str) -> str:
    """Who serves the database, as far as its ``serving`` row says. A row that still names
    this coordinator (``own``) means another one holds the lock and has not fenced yet."""
    holder = ""
    try:
        with database_errors(), engine.connect() as conn:
            holder = (
                conn.execute(select(serving.c.holder).where(serving.c.id == 1)).scalar_one_or_none()
                or ""
            )
    except StoreUnavailable:
        pass  # an older schema without the row: the message goes without a name
    if own and holder == own:
        return f"another coordinator is taking {shown} over"
    return f"{holder or 'another coordinator'} serves {shown}"


def _flock(path: str, shown: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open {shown} to lock it: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ServingTaken(_taken(shown)) from None
    except OSError as exc:
        os.close(fd)
        raise StoreUnavailable(f"cannot lock {shown}: {exc.strerror}") from exc
    return fd


def _taken(shown: str) -> str:
    return (
        f"another coordinator is already serving {shown}; a SQLite database has one "
        "serving coordinator (README.md, 'Several coordinators': standbys need "
        "PostgreSQL): stop the other one, or give this one its own database"
    )


class DatabaseClock:
    """This host's clock moved by the serving lock's last measured offset: on PostgreSQL
    the database's time, so timers fire at the same moment whichever coordinator serves."""

    def __init__(self, offset: Callable[[], timedelta]) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset()
