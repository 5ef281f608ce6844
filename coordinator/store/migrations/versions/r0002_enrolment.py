"""Revision 0002: dryad enrolment (worker UUID to SSH key bindings, enrolment tokens).

Columns are spelled out here, not imported from ``tables.py`` (see revision 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dryad_keys",
        sa.Column("uuid", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("enrolled_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_dryad_keys"),
    )
    op.create_table(
        "enrol_tokens",
        sa.Column("token_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_enrol_tokens"),
    )


def downgrade() -> None:
    op.drop_table("enrol_tokens")
    op.drop_table("dryad_keys")
