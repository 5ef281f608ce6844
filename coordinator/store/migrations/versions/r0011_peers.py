"""Revision 0011: where the serving coordinator's HTTP API is reached by the others, and the
farm's peer secret that lets them forward requests to it (docs/failover.md §scale-out).

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

SECRET_BYTES = 32


def upgrade() -> None:
    op.add_column("serving", sa.Column("peer_url", sa.Text, nullable=False, server_default=""))
    op.add_column("serving", sa.Column("peer_secret", sa.Text, nullable=False, server_default=""))
    # Made here, once per database: every coordinator of the farm reads the same one.
    op.execute(
        sa.text("UPDATE serving SET peer_secret = :secret").bindparams(
            secret=secrets.token_hex(SECRET_BYTES)
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("serving") as batch:  # SQLite drops a column by copying
        batch.drop_column("peer_secret")
        batch.drop_column("peer_url")
