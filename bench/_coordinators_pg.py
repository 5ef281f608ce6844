"""A private PostgreSQL cluster for bench/coordinators.py, durable as in production, and what
the bench asks it while it runs: its server processes' CPU and its sessions' wait events."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg  # noqa: TID251 - the bench reads PostgreSQL's own views, not our tables
from psycopg import sql  # noqa: TID251

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cluster helper
from tests.pg_cluster import running_server

# Durable, as a farm would run it: every commit waits for its WAL to reach the disk. These
# are PostgreSQL's defaults; they are named so that nobody's postgresql.conf can change them.
DURABLE = ("fsync=on", "synchronous_commit=on", "full_page_writes=on")
SHOWN = ("server_version", *(s.split("=")[0] for s in DURABLE), "wal_sync_method")
SHOWN += ("shared_buffers",)
# Every session of a coordinator carries this name (coordinator/store/engine.py).
APPLICATION = "boruta-coordinator"


@dataclass(frozen=True)
class Cluster:
    port: int
    data: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @property
    def log(self) -> Path:
        return self.data.parent / "server.log"

    def log_statements(self, on: bool) -> None:
        """Log every statement of every session (with its server process's pid), or stop."""
        with self.connect() as conn:
            if on:
                conn.execute("ALTER SYSTEM SET log_statement = 'all'")
                conn.execute("ALTER SYSTEM SET log_line_prefix = '%p '")
            else:
                conn.execute("ALTER SYSTEM RESET log_statement")
                conn.execute("ALTER SYSTEM RESET log_line_prefix")
            conn.execute("SELECT pg_reload_conf()")

    def postmaster(self) -> int:
        """The server's main process (its children are the sessions and the background
        writers)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def settings(self) -> str:
        with self.connect() as conn:
            shown = [f"{s}={conn.execute(f'SHOW {s}').fetchone()[0]}" for s in SHOWN]  # type: ignore[index]
        return ", ".join(shown)


@contextmanager
def private_cluster(parent: Path) -> Iterator[Cluster]:
    """A durable PostgreSQL cluster in a new folder under ``parent`` (the same disk as the
    SQLite file it is compared with), started now, stopped and removed when the block
    ends."""
    with running_server(DURABLE, parent) as (port, data):
        yield Cluster(port, data)


# ---- what the coordinators' sessions wait for -----------------------------------------------

_BUSY = """
SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE application_name = %s AND datname = %s AND state IN ('active', 'idle in transaction')
"""


@dataclass
class Waits:
    """pg_stat_activity sampled: per sample, each coordinator session that was inside a
    statement or a transaction, by what it was doing."""

    samples: int = 0
    seconds: float = 0.0
    busy: Counter[str] = field(default_factory=Counter)  # session-samples by kind

    @property
    def busy_total(self) -> int:
        return sum(self.busy.values())

    def share(self, prefix: str) -> float:
        """The share of busy session-samples whose kind starts with ``prefix``."""
        total = self.busy_total
        return sum(n for k, n in self.busy.items() if k.startswith(prefix)) / total if total else 0


def _kind(state: str, wait_type: str | None, wait: str | None) -> str:
    if state == "idle in transaction":
        return "in transaction, waiting for the coordinator"
    if wait_type is None:
        return "running (CPU)"
    return f"{wait_type}:{wait}"


class WaitSampler:
    """A thread that reads one database's coordinator sessions from pg_stat_activity every
    ``period`` seconds, on its own session (whose server process ``backend`` the bench
    leaves out of the server's CPU)."""

    def __init__(self, cluster: Cluster, period: float) -> None:
        self._conn = cluster.connect()
        row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        self.backend = int(str(row[0]))
        self._period = period
        self._stop = threading.Event()
        self._waits = Waits()
        self._thread: threading.Thread | None = None
        self._database = ""

    def start(self, database: str) -> None:
        self._database = database
        self._waits = Waits()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Waits:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self._waits

    def close(self) -> None:
        self._conn.close()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.wait(self._period):
            # pg_stat_activity is a snapshot per transaction: autocommit takes a new one.
            rows = self._conn.execute(_BUSY, (APPLICATION, self._database)).fetchall()
            self._waits.samples += 1
            for state, wait_type, wait in rows:
                self._waits.busy[_kind(str(state), wait_type, wait)] += 1  # type: ignore[arg-type]
        self._waits.seconds = time.perf_counter() - started


# ---- what a write transaction sends ------------------------------------------------------------

# One logged message: its first line, and the lines PostgreSQL continues it on (a tab first).
_LOGGED = re.compile(r"^(\d+) LOG:  (?:statement|execute [^:]+): (.*(?:\n\t.*)*)$", re.MULTILINE)


@dataclass
class Statements:
    """The write transactions found in a statement log: how many, the messages each took
    (a transaction's statements leave as one text: docs/failover.md §round trips) and
    their statements, counted by kind."""

    transactions: int = 0
    sizes: list[int] = field(default_factory=list)  # statements per transaction
    messages: list[int] = field(default_factory=list)  # messages (round trips) per transaction
    kinds: Counter[str] = field(default_factory=Counter)


def _statement_kind(text: str) -> str:
    if text == ";":
        return "; (the connection pool's pre-ping)"
    return " ".join(text.replace("(", " ").split()[:3])


def write_transactions(log: str) -> Statements:
    """Statements per write transaction (one with an INSERT, UPDATE or DELETE), counting
    what a session sent since its previous transaction ended (the pool's pre-ping)."""
    found = Statements()
    pending: dict[str, list[list[str]]] = {}
    for pid, message in _LOGGED.findall(log):
        # The commit joins its statements with ";\n", which the log continues with a tab.
        parts = [p.strip() for p in message.split(";\n\t")]
        sent = pending.setdefault(pid, [])
        sent.append(parts)
        if parts[-1].rstrip(";") not in ("COMMIT", "ROLLBACK"):
            continue
        del pending[pid]
        texts = [t for parts in sent for t in parts]
        if any(t.split()[0] in ("INSERT", "UPDATE", "DELETE") for t in texts if t.split()):
            found.transactions += 1
            kinds = [_statement_kind(t) for t in texts]
            found.sizes.append(len(kinds))
            found.messages.append(len(sent))
            found.kinds.update(kinds)
    return found
