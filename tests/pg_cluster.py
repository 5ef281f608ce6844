"""A private, throw-away PostgreSQL server for the store and e2e tests: PgCluster, its start."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PgCluster:
    """A throwaway PostgreSQL server that trusts local connections."""

    port: int
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit session on ``database`` as the superuser."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def end_lock_holders(self, key: int, database: str | None = None) -> int:
        """End the sessions holding the advisory lock ``key`` (in ``database`` only, when
        given), as a server restart or a network cut the server noticed would; how many."""
        query = (
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a"
            " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s"
            " AND (%s::text IS NULL OR a.datname = %s)"
        )
        with self.admin() as conn:
            return len(conn.execute(query, (key, database, database)).fetchall())

    def create_database(self) -> str:
        name = f"boruta_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def pg_bindir() -> Path:
    found = sorted(
        PG_ROOT.glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found or not (found[-1].parent / "initdb").exists():
        pytest.fail(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found under {PG_ROOT}/*/bin: "
            "install the Debian package postgresql (scripts/install.sh does), "
            "or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster, started now and removed when the block ends."""
    # Durability is the server's business, not these tests': fsync off keeps them fast.
    with running_server(("fsync=off",)) as (port, _):
        yield PgCluster(port, itertools.count(1))


@contextmanager
def running_server(
    settings: Sequence[str], parent: Path | None = None
) -> Iterator[tuple[int, Path]]:
    """A PostgreSQL server with ``settings`` (``-c NAME=VALUE`` each) on a new cluster in a
    new folder (under ``parent``, or the system's temporary one), started now, stopped and
    removed when the block ends; yields its port and its data folder."""
    bindir = pg_bindir()
    # PostgreSQL refuses to run as root, so as root the cluster belongs to "postgres".
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    # Not pytest's tmp_path: its parents are private to root, and postgres must reach it.
    base = Path(tempfile.mkdtemp(prefix="boruta-pg-", dir=parent))
    if as_root:
        for folder in [base] if parent is None else [parent, base]:
            folder.chmod(0o755)  # postgres must reach its folder
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    try:
        # --no-sync only skips flushing the fresh cluster's files once.
        run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} "
        options += " ".join(f"-c {setting}" for setting in settings)
        run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
            + ["-t", "60", "-o", options, "start"],
            f"pg_ctl start (log in {log})",
        )
        try:
            yield port, data
        finally:
            run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                "pg_ctl stop",
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
