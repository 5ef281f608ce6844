"""Revision 0003: the port of each job's tunnel, so it comes back on that port after a restart.

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tunnel_ports",
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("request", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("port", name="pk_tunnel_ports"),
    )


def downgrade() -> None:
    op.drop_table("tunnel_ports")
