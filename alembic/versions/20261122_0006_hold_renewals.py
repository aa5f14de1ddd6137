"""hold renewals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "bookings", sa.Column("renewals", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("bookings", "renewals")
