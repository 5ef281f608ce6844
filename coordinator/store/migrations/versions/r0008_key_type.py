"""Revision 0008: the job key type each request asked for; every older request asked for RSA.

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The server default fills the existing rows: before this revision every job key was
    # RSA (docs/boruta-api.md §keys).
    op.add_column("requests", sa.Column("key_type", sa.Text, nullable=False, server_default="rsa"))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:  # SQLite drops a column by copying
        batch.drop_column("key_type")
