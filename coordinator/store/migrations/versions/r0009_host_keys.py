"""Revision 0009: each worker's sshd host keys, as its dryad reported them (an empty list
for workers registered before: their dryads report them again at their next connection).

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("host_keys", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column in place.
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("host_keys")
