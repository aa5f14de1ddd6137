"""event sale start and waiting room

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("sale_starts_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "events",
        sa.Column("queue_enabled", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column(
        "events",
        sa.Column("queue_admit_per_second", sa.Integer(), server_default="50", nullable=False),
    )
    op.add_column(
        "events",
        sa.Column("queue_admission_minutes", sa.Integer(), server_default="10", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("events", "queue_admission_minutes")
    op.drop_column("events", "queue_admit_per_second")
    op.drop_column("events", "queue_enabled")
    op.drop_column("events", "sale_starts_at")
