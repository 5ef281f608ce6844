"""``SqlStore``'s fair-share part: each user's decayed usage and the quotas (docs/scheduling.md)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from functools import cache

from sqlalchemy import BindParameter, Connection, Executable, Row, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.quotas import Quota, Quotas
from coordinator.errors import NotFound
from coordinator.store import QuotaKind
from coordinator.store.tables import EPOCH, quotas, usage


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


def apply_charges(conn: Connection, charges: Sequence[Charge]) -> None:
    """Add ended jobs to their owners' usage inside the commit's transaction.

    Each owner's row is read locked and rewritten once, with that owner's charges applied
    in order: on SQLite the write transaction holds the database; on PostgreSQL ``FOR
    UPDATE`` makes another coordinator's charge wait, and the empty row inserted first gives
    it something to lock. Charges commute (docs/scheduling.md §fair share), so the order
    the coordinators get there is moot.
    """
    by_owner: dict[str, list[Charge]] = {}
    for item in charges:
        by_owner.setdefault(item.owner, []).append(item)
    add_empty, read, write = _charge_statements(conn.dialect.name)
    for owner, items in by_owner.items():
        conn.execute(add_empty, {"owner": owner, "value": 0.0, "at": EPOCH})
        row = conn.execute(read, {"who": owner}).one()
        new = Usage(owner, float(row.value), row.at)
        for item in items:
            new = item.onto(new)
        conn.execute(write, {"who": owner, "new_value": new.value, "new_at": new.at})


@cache  # built once per dialect: building a statement costs more than running it
def _charge_statements(dialect: str) -> tuple[Executable, Executable, Executable]:
    """Insert an empty row if there is none, read it locked, rewrite it; by bound owner."""
    ins = postgresql.insert(usage) if dialect == "postgresql" else sqlite.insert(usage)
    who: BindParameter[str] = bindparam("who")
    return (
        ins.on_conflict_do_nothing(index_elements=[usage.c.owner]),
        select(usage).where(usage.c.owner == who).with_for_update(),
        update(usage)
        .where(usage.c.owner == who)
        .values(value=bindparam("new_value"), at=bindparam("new_at")),
    )
