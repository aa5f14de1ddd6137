"""index seats by booking

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 20:44:01.345997
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_seats_booking_id",
        "seats",
        ["booking_id"],
        unique=False,
        postgresql_where=sa.text("booking_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_seats_booking_id",
        table_name="seats",
        postgresql_where=sa.text("booking_id IS NOT NULL"),
    )
