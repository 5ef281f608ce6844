"""Revision 0007: text that cannot be encoded as UTF-8, stored by an older version, cleaned.

Before the API refused them (docs/boruta-api.md §limits), JSON's ``"\\ud800"`` escapes could
put lone surrogates into caps, groups, reasons, webhook URLs and user names; such a row
made every answer that listed it fail. Each lone surrogate is replaced by U+FFFD, the
replacement character, and every changed row is logged (table, key, columns) at WARNING.
A user name that two users would then share gets a ``-2``-style suffix, and the requests,
transitions and webhooks that name the user follow the new name. There is no way back:
the downgrade changes nothing.

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

logger = logging.getLogger("coordinator.store.migrations")

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_NAME_COLUMNS: Final = frozenset({"owner", "actor", "created_by", "deleted_by"})

# table: (its key column, its text columns, its JSON columns)
_TABLES: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "users": ("name", ("name",), ("groups",)),
    "requests": ("id", ("owner", "reason", "job_worker"), ("groups", "caps")),
    "workers": ("uuid", ("reason", "ssh_address"), ("groups", "caps")),
    "transitions": ("id", ("subject", "reason", "actor"), ()),
    "webhooks": ("id", ("url", "secret", "created_by", "deleted_by"), ("kinds",)),
    "webhook_deliveries": ("id", ("last_error",), ()),
    "usage": ("owner", ("owner",), ()),  # follows a renamed user, as requests do
}


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate, in keys too, replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def upgrade() -> None:
    conn = op.get_bind()
    renamed, changed = _clean_users(conn)
    changed += sum(_clean(conn, name, renamed) for name in _TABLES if name != "users")
    if changed:
        logger.warning(
            "migration %s: %d row(s) held text that is not UTF-8; lone surrogates"
            " replaced with U+FFFD",
            revision,
            changed,
        )


def _table(name: str) -> sa.TableClause:
    key, texts, jsons = _TABLES[name]
    columns = [sa.column(c, sa.Text) for c in dict.fromkeys((key, *texts))]
    return sa.table(name, *columns, *(sa.column(c, sa.JSON) for c in jsons))


def _clean_users(conn: sa.Connection) -> tuple[dict[str, str], int]:
    """Clean the users' names and groups: the old name → the new one for each renamed user,
    and the number of users changed."""
    users = _table("users")
    rows = conn.execute(sa.select(users)).mappings().all()
    taken = {row["name"] for row in rows}
    renamed: dict[str, str] = {}
    changed = 0
    for row in rows:
        name, groups = row["name"], _scrub(row["groups"])
        new = _scrub(name)
        if new != name:
            base, n = new, 2
            while new in taken:
                new, n = f"{base}-{n}", n + 1
            taken.add(new)
            renamed[name] = new
        what = [c for c, bad in (("name", new != name), ("groups", groups != row["groups"])) if bad]
        if what:
            changed += 1
            logger.warning("migration %s: users %r: %s cleaned", revision, new, ", ".join(what))
            conn.execute(users.update().where(users.c.name == name).values(name=new, groups=groups))
    return renamed, changed


def _clean(conn: sa.Connection, name: str, renamed: Mapping[str, str]) -> int:
    """Clean one table's text and JSON columns; the number of rows changed."""
    key, texts, jsons = _TABLES[name]
    table = _table(name)
    updates: list[tuple[Any, dict[str, Any]]] = []
    for row in conn.execute(sa.select(table)).mappings():
        values: dict[str, Any] = {}
        for column in (*texts, *jsons):
            old = row[column]
            new = renamed.get(old, old) if column in _NAME_COLUMNS else old
            new = _scrub(new)
            if new != old:
                values[column] = new
        if values:
            updates.append((row[key], values))
    for row_key, values in updates:
        logger.warning(
            "migration %s: %s %s: %s cleaned", revision, name, _scrub(row_key), ", ".join(values)
        )
        conn.execute(table.update().where(table.c[key] == row_key).values(**values))
    return len(updates)


def downgrade() -> None:
    """The text before the cleaning is gone: nothing to undo."""
