"""Revision 0010: the serving epoch, which fences the writes of a coordinator that lost the
database to another one (docs/failover.md §standby).

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    serving = op.create_table(
        "serving",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_serving"),
    )
    op.bulk_insert(serving, [{"id": 1, "epoch": 0, "holder": ""}])


def downgrade() -> None:
    op.drop_table("serving")
