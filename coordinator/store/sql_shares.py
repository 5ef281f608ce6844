"""``SqlStore``'s fair-share part: each user's decayed usage and the quotas (docs/scheduling.md)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import Connection, Row, delete, select

from coordinator.domain.fairshare import Usage
from coordinator.domain.quotas import Quota, Quotas
from coordinator.errors import NotFound
from coordinator.store import QuotaKind
from coordinator.store.tables import quotas, usage


class SqlShares:
    """Mixed into ``SqlStore``, which provides the transactions."""

    def _reading(self, *, check: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _writing(self, *, check: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def usage(self) -> dict[str, Usage]:
        """Every user's stored usage, as last charged."""
        with self._reading() as conn:
            return read_usage(conn)

    def quotas(self) -> Quotas:
        """Every quota, by user and by group."""
        with self._reading() as conn:
            return read_quotas(conn)

    def put_quota(self, kind: QuotaKind, name: str, quota: Quota) -> None:
        """Set (insert or replace) the quota of a user or a group."""
        job = None if quota.max_job is None else int(quota.max_job.total_seconds())
        values = {
            "kind": kind,
            "name": name,
            "max_held": quota.max_held,
            "max_waiting": quota.max_waiting,
            "max_job_seconds": job,
        }
        c = quotas.c
        with self._writing() as conn:
            conn.execute(delete(quotas).where((c.kind == kind) & (c.name == name)))
            conn.execute(quotas.insert(), values)

    def delete_quota(self, kind: QuotaKind, name: str) -> None:
        """Remove a quota; raises ``NotFound`` when there is none."""
        c = quotas.c
        with self._writing() as conn:
            gone = conn.execute(delete(quotas).where((c.kind == kind) & (c.name == name)))
            if gone.rowcount == 0:
                raise NotFound(f"quota of {kind} {name}")


def read_usage(conn: Connection) -> dict[str, Usage]:
    rows = conn.execute(select(usage).order_by(usage.c.owner)).all()
    return {row.owner: Usage(row.owner, float(row.value), row.at) for row in rows}


def read_quotas(conn: Connection) -> Quotas:
    rows = conn.execute(select(quotas).order_by(quotas.c.kind, quotas.c.name)).all()
    users = {row.name: _quota(row) for row in rows if row.kind == "user"}
    groups = {row.name: _quota(row) for row in rows if row.kind == "group"}
    return Quotas(users, groups)


def _quota(row: Row[tuple[object, ...]]) -> Quota:
    m = row._mapping
    job = m["max_job_seconds"]
    return Quota(
        max_held=m["max_held"],
        max_waiting=m["max_waiting"],
        max_job=None if job is None else timedelta(seconds=job),
    )
