"""Alembic environment: runs revisions on the connection ``schema.upgrade`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from coordinator.store.tables import metadata

# No alembic.ini and no engine here: the store owns the connection (and its transaction,
# pragmas and locks), so migrations run exactly where the coordinator's queries run.
connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through coordinator.store.schema.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite can alter tables only by copying them; batch mode does that for later revisions.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
