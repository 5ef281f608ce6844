"""``SqlStore``: the ``Store`` on SQLAlchemy Core, for SQLite (a WAL file) and PostgreSQL."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Final

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    delete,
    exc as sa_exc,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import SubjectKind, Transition, User, Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import Conflict, NotFound, StoreUnavailable
from coordinator.store import Changes, Snapshot, WriteFailure
from coordinator.store.boundary import READ_ONLY, database_errors
from coordinator.store.engine import WRITE, SqliteSync, create, database_url
from coordinator.store.records import Numbered
from coordinator.store.schema import check_known, current, head, upgrade
from coordinator.store.serving import Lease, Serving, ServingLock, peer_secret, who_serves
from coordinator.store.sql_commit_pg import write_postgresql
from coordinator.store.sql_feed import SqlFeed
from coordinator.store.sql_requests import SqlRequests, load_requests
from coordinator.store.sql_shares import SqlShares, read_quotas, read_usage
from coordinator.store.sqlite_writer import SqliteWriter
from coordinator.store.tables import (
    dryad_keys,
    enrol_tokens,
    store_probe,
    transitions,
    tunnel_ports,
    users,
    workers,
)

logger = logging.getLogger(__name__)

# Any fixed number: PostgreSQL serialises concurrent coordinators' migrations on it.
_MIGRATION_LOCK: Final = 0x626F7275  # "boru"
_KINDS: Final[Mapping[str, SubjectKind]] = {"request": "request", "worker": "worker"}


class SqlStore(SqlFeed, SqlShares, SqlRequests):
    """The ``Store`` protocol on one SQLAlchemy engine; use :meth:`open` to make one.

    Every method is blocking and thread-safe (each call takes a pooled connection; SQLite's
    commits take turns on the one connection they hold), and raises ``StoreUnavailable``
    for any database failure, after rolling back.
    """

    def __init__(
        self, engine: Engine, *, clock: Clock | None = None, sqlite_path: str | None = None
    ) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE: True})
        self._clock: Clock = clock or SystemClock()
        self._sqlite_path = sqlite_path
        self._current = False  # the schema is known to be at head
        self._closed = False
        self._serving: ServingLock | None = None
        self._holder = ""
        self._write_failure: WriteFailure | None = None
        # SQLite's commits run on a connection of their own, PostgreSQL's take a pooled
        # one each like every other call (docs/architecture.md §the commit on SQLite).
        self._sqlite_writer = SqliteWriter(engine) if sqlite_path is not None else None

    @classmethod
    def open(
        cls,
        url_or_path: str | os.PathLike[str],
        *,
        sqlite_sync: SqliteSync = "FULL",
        busy_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> SqlStore:
        """Connect to a database and check that its schema is not newer than this code.

        :param url_or_path: a file path or ``sqlite:///PATH`` for SQLite;
            ``postgresql://…`` or ``postgresql+psycopg://…`` for PostgreSQL (psycopg 3).
        :param sqlite_sync: SQLite's ``synchronous`` pragma. ``FULL`` (the default) makes
            every commit survive power loss; ``NORMAL`` only survives a process crash.
        :param busy_timeout: seconds a SQLite write waits for another writer's lock.
        :param connect_timeout: seconds to wait for a PostgreSQL server.
        :param clock: stamps the users' creation time; the system clock by default.
        :raises StoreUnavailable: when the database cannot be opened or is too new.
        :raises ValueError: for a URL of another database, or an in-memory database.
        """
        url = database_url(url_or_path)
        if sqlite_sync not in ("FULL", "NORMAL"):
            raise ValueError(f"sqlite_sync must be FULL or NORMAL, not {sqlite_sync!r}")
        sqlite_path = url.database if url.get_backend_name() == "sqlite" else None
        with database_errors(sqlite_path):
            engine = create(url, sqlite_sync, busy_timeout, connect_timeout)
        store = cls(engine, clock=clock, sqlite_path=sqlite_path)
        try:
            store._check_schema()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        """The underlying engine, for tests and diagnostics."""
        return self._engine

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file, or None on PostgreSQL."""
        return self._sqlite_path

    @property
    def url(self) -> str:
        """The database URL with any password masked, for logs."""
        return self._engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest version; a no-op when it is there already.

        :raises StoreUnavailable: when the schema is newer than this code, or on failure.
        """
        with self._writing(check=False) as conn:
            if conn.dialect.name == "postgresql":
                _pg_lock_for_migration(conn)
            before = current(conn)
            upgrade(conn)
        self._current = True
        if self._serving is not None:
            self._serving.fence(self._holder)
        if before != (head(),):
            logger.info(
                "store schema migrated from %s to revision %s",
                f"revision {', '.join(before)}" if before else "an empty database",
                head(),
            )

    def load(self, finished: int | None = None) -> Snapshot:
        """Read the live requests and the ``finished`` finished ones with the highest IDs
        (all with ``None``), by ID; every worker, by UUID; usage and quotas."""
        with self._reading() as conn:
            reqs, next_id, next_queued, left_out = load_requests(conn, finished)
            worker_rows = conn.execute(select(workers).order_by(workers.c.uuid)).all()
            used, limits = read_usage(conn), read_quotas(conn)
        return Snapshot(
            requests=reqs,
            workers=[_worker(row) for row in worker_rows],
            usage=used,
            quotas=limits,
            next_id=next_id,
            next_queued=next_queued,
            left_out=left_out,
        )

    def commit(self, changes: Changes) -> list[Numbered]:
        """Apply ``changes`` in one transaction: upserts, then removals, then transitions,
        then the ended jobs' usage; returns the transitions as numbered by the store.

        A worker both upserted and removed ends up removed.
        """
        if not changes:
            return []
        if self._sqlite_writer is not None:
            self._usable(check=True)
            known = None if self._serving is None else self._serving.usage
            with self._noting_failures(), database_errors(self._sqlite_path):
                return self._sqlite_writer.commit(changes, known)
        with self._writing(fenced=False) as conn:
            return write_postgresql(conn.connection.driver_connection, changes, self._serving)

    def add_user(self, user: User, token_hash: str) -> None:
        """Create a user; raises ``Conflict`` when the name (or the token) is taken."""
        values = {
            "name": user.name,
            "token_hash": token_hash,
            "admin": user.admin,
            "groups": list(user.groups),
            "created": self._clock.now(),
        }
        try:
            with self._writing() as conn:
                conn.execute(insert(users), values)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise
            if self._user_exists(user.name):
                raise Conflict(f"user {user.name} exists") from exc
            raise Conflict(f"the token of user {user.name} is already in use") from exc

    def set_token(self, name: str, token_hash: str) -> None:
        """Replace a user's token; raises ``NotFound`` for an unknown user."""
        try:
            with self._writing() as conn:
                result = conn.execute(
                    update(users).where(users.c.name == name).values(token_hash=token_hash)
                )
                if result.rowcount == 0:
                    raise NotFound("User")
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise
            raise Conflict(f"the new token of user {name} is already in use") from exc

    def remove_user(self, name: str) -> None:
        """Delete a user; raises ``NotFound`` for an unknown user."""
        with self._writing() as conn:
            if conn.execute(delete(users).where(users.c.name == name)).rowcount == 0:
                raise NotFound("User")

    def user_by_token(self, token_hash: str) -> User | None:
        """Find the user holding a token, by its hash."""
        with self._reading() as conn:
            row = conn.execute(select(users).where(users.c.token_hash == token_hash)).first()
        return None if row is None else _user(row)

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._reading() as conn:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [_user(row) for row in rows]

    def transitions(
        self, kind: str | None = None, subject: str | None = None, limit: int = 1000
    ) -> list[Transition]:
        """The latest ``limit`` recorded transitions, oldest first, optionally filtered."""
        query = select(transitions).order_by(transitions.c.id.desc()).limit(max(limit, 0))
        if kind is not None:
            query = query.where(transitions.c.kind == kind)
        if subject is not None:
            query = query.where(transitions.c.subject == subject)
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return [_transition(row) for row in reversed(rows)]

    def add_enrol_token(self, token_hash: str, expires: datetime) -> None:
        """Store an enrolment token by its hash; raises ``Conflict`` for a hash seen before."""
        values = {
            "token_hash": token_hash,
            "created_at": self._clock.now(),
            "expires_at": expires,
            "revoked": False,
        }
        try:
            with self._writing() as conn:
                conn.execute(insert(enrol_tokens), values)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise
            raise Conflict("this enrolment token exists already") from exc

    def enrol_token_valid(self, token_hash: str, now: datetime) -> bool:
        """Whether the token exists, is not revoked and expires after ``now``."""
        query = select(enrol_tokens.c.token_hash).where(
            enrol_tokens.c.token_hash == token_hash,
            enrol_tokens.c.revoked.is_(False),
            enrol_tokens.c.expires_at > now,
        )
        with self._reading() as conn:
            return conn.execute(query).first() is not None

    def revoke_enrol_tokens(self) -> int:
        """Revoke every enrolment token; returns how many were not revoked before."""
        with self._writing() as conn:
            result = conn.execute(
                update(enrol_tokens).where(enrol_tokens.c.revoked.is_(False)).values(revoked=True)
            )
        return int(result.rowcount)

    def bind_dryad(self, uuid: str, public_key: str) -> None:
        """Bind ``uuid`` to ``public_key``; idempotent for the same key.

        :raises Conflict: when ``uuid`` is bound to another key.
        """
        values = {"uuid": uuid, "public_key": public_key, "enrolled_at": self._clock.now()}
        bound = self.dryad_key(uuid)
        if bound is None:
            try:
                with self._writing() as conn:
                    conn.execute(insert(dryad_keys), values)
                return
            except StoreUnavailable as exc:
                if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                    raise
            bound = self.dryad_key(uuid)  # another coordinator bound it meanwhile
        if bound != public_key:
            raise Conflict(f"worker {uuid} is enrolled with another key")

    def dryad_key(self, uuid: str) -> str | None:
        """The public key ``uuid`` is bound to, or ``None`` if it is not enrolled."""
        with self._reading() as conn:
            key = conn.execute(
                select(dryad_keys.c.public_key).where(dryad_keys.c.uuid == uuid)
            ).scalar()
        return None if key is None else str(key)

    def tunnel_ports(self) -> dict[RequestID, int]:
        """The port last given to each request's tunnel."""
        with self._reading() as conn:
            rows = conn.execute(select(tunnel_ports.c.request, tunnel_ports.c.port)).all()
        return {RequestID(row.request): int(row.port) for row in rows}

    def put_tunnel_port(self, rid: RequestID, port: int) -> None:
        """Record ``rid``'s tunnel port; the port's and the request's old rows go."""
        c = tunnel_ports.c
        with self._writing() as conn:
            conn.execute(delete(tunnel_ports).where((c.port == port) | (c.request == rid)))
            conn.execute(insert(tunnel_ports), {"port": port, "request": rid})

    def write_failure(self) -> WriteFailure | None:
        """Why the latest write failed, unless a write has succeeded since."""
        return self._write_failure

    def probe_write(self) -> None:
        """Rewrite the probe row in a transaction of its own.

        :raises StoreUnavailable: naming the cause (full, read-only, locked, unreachable).
        """
        with self._writing() as conn:
            conn.execute(
                _upsert(conn.dialect.name, store_probe, "id"), [{"id": 1, "at": self._clock.now()}]
            )

    def claim_serving(self, holder: str = "", peer_url: str = "") -> None:
        """Become the one coordinator serving this database, until :meth:`close`; on
        PostgreSQL, :meth:`migrate` then fences off every earlier holder's writes.

        :param holder: who serves, as a standby's message names it (host, port, pid).
        :param peer_url: where the other coordinators reach this one's HTTP API.
        :raises ServingTaken: when another coordinator serves it already.
        """
        if self._serving is None:
            shown = self._sqlite_path or self.url
            self._serving = ServingLock.claim(
                self._engine, self._sqlite_path, shown, holder, peer_url
            )
            self._holder = holder

    def release_serving(self) -> None:
        """Stop serving the database (another coordinator may take it); idempotent."""
        if self._serving is not None:
            lock, self._serving = self._serving, None
            lock.release()

    def who_serves(self) -> Serving:
        """Whether a coordinator serves this database now, and which one took it last."""
        return who_serves(self._engine, self._sqlite_path)

    def peer_secret(self) -> str:
        """The farm's peer secret (docs/failover.md §scale-out); never log it."""
        return peer_secret(self._engine)

    def serving_epoch(self) -> int:
        """The serving epoch this store holds (docs/failover.md §standby); 0 when none."""
        return (self._serving.epoch or 0) if self._serving is not None else 0

    def clock_offset(self) -> timedelta:
        """The database's clock minus this host's, while serving PostgreSQL; else zero."""
        return self._serving.offset if self._serving is not None else timedelta(0)

    def lease(self) -> Lease:
        """Whether this coordinator still serves the database; blocking: it may re-take
        the lock after a lost session (docs/failover.md §standby)."""
        return Lease.HELD if self._serving is None else self._serving.check()

    def close(self) -> None:
        """Release every connection and the serving lock; idempotent."""
        if not self._closed:
            self._closed = True
            if self._sqlite_writer is not None:
                self._sqlite_writer.close()
            self._engine.dispose()
            # After the pool's connections: closing any descriptor of a SQLite file drops
            # every POSIX lock this process holds on it, a transaction's included.
            if self._serving is not None:
                self._serving.release()

    def _user_exists(self, name: str) -> bool:
        with self._reading() as conn:
            found = conn.execute(select(users.c.name).where(users.c.name == name)).first()
        return found is not None

    def _check_schema(self) -> None:
        """Refuse a newer schema; remember whether this one is at head."""
        with self._reading(check=False) as conn:
            revisions = current(conn)
        check_known(revisions)
        self._current = revisions == (head(),)

    @contextmanager
    def _reading(self, *, check: bool = True) -> Iterator[Connection]:
        self._usable(check)
        with database_errors(self._sqlite_path), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _writing(self, *, check: bool = True, fenced: bool = True) -> Iterator[Connection]:
        """A write transaction; ``fenced`` checks the serving epoch first (``commit`` does
        that itself, in the text it sends)."""
        self._usable(check)
        with self._noting_failures(), database_errors(self._sqlite_path):
            with self._writer.begin() as conn:
                if fenced and self._serving is not None:
                    self._serving.check_write(conn)
                yield conn

    @contextmanager
    def _noting_failures(self) -> Iterator[None]:
        """Remember why a write failed (``write_failure``), or that the latest succeeded."""
        try:
            yield
        except StoreUnavailable as exc:
            self._write_failure = WriteFailure(exc.message, time.monotonic())
            if exc.message.startswith(READ_ONLY):
                # SQLite opens a file it may not write read-only, and such a connection
                # stays so: new ones are needed to notice the file is writable again.
                self._engine.dispose()
            raise
        self._write_failure = None

    def _usable(self, check: bool) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if check and not self._current:
            self._check_schema()  # another process may have migrated it meanwhile
            if not self._current:
                raise StoreUnavailable(
                    f"database schema is not at revision {head()}: run the migration"
                )


@cache  # built once: building it costs more than executing it (a proxy per column)
def _upsert(dialect: str, table: Table, key: str) -> Insert:
    """INSERT … ON CONFLICT (key) DO UPDATE of every other column, in the dialect's syntax."""
    stmt: sqlite.Insert | postgresql.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - database_url admits only these two
        raise StoreUnavailable(f"no upsert for {dialect}")
    replace = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    return stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=replace)


def _pg_lock_for_migration(conn: Connection) -> None:
    """Serialise coordinators that migrate one PostgreSQL database at the same time."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})


def _worker(row: Row[tuple[object, ...]]) -> Worker:
    m = row._mapping
    return Worker(
        uuid=WorkerUUID(m["uuid"]),
        state=WorkerState(m["state"]),
        caps=m["caps"],
        groups=tuple(m["groups"]),
        registered=m["registered"],
        changed=m["changed"],
        ssh_address=m["ssh_address"],
        reason=m["reason"],
        epoch=m["epoch"],
        key=bytes(m["key"]),
        host_keys=tuple(m["host_keys"]),
    )


def _user(row: Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(name=m["name"], admin=bool(m["admin"]), groups=tuple(m["groups"]))


def _transition(row: Row[tuple[object, ...]]) -> Transition:
    m = row._mapping
    return Transition(
        at=m["at"],
        kind=_KINDS[m["kind"]],
        subject=m["subject"],
        old=m["old"],
        new=m["new"],
        reason=m["reason"],
        actor=m["actor"],
    )
