"""Revision 0005: each user's decayed usage and the quotas of users and groups.

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_usage"),
    )
    op.create_table(
        "quotas",
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("max_held", sa.Integer, nullable=True),
        sa.Column("max_waiting", sa.Integer, nullable=True),
        sa.Column("max_job_seconds", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_quotas"),
    )


def downgrade() -> None:
    op.drop_table("quotas")
    op.drop_table("usage")
