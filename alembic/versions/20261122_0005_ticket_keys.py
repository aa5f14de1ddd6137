"""ticket signing keys, revocation list, check-in nonce

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _event_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["event_id"], ["events.id"], name=op.f(f"fk_{table}_event_id_events"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "ticket_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_key_sealed", sa.LargeBinary(), nullable=False),
        _created_at("created_at"),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        _event_fk("ticket_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_keys")),
    )
    op.create_index("uq_ticket_keys_event_id_kid", "ticket_keys", ["event_id", "kid"], unique=True)
    op.create_index(
        "uq_ticket_keys_active",
        "ticket_keys",
        ["event_id"],
        unique=True,
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.create_table(
        "ticket_revocations",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        _created_at("revoked_at"),
        _event_fk("ticket_revocations"),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_revocations_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "seq", name=op.f("pk_ticket_revocations")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_ticket_revocations_ticket_id")),
    )
    op.create_table(
        "ticket_revocation_heads",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        _event_fk("ticket_revocation_heads"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ticket_revocation_heads")),
    )
    op.add_column("tickets", sa.Column("checkin_nonce", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("tickets", "checkin_nonce")
    op.drop_table("ticket_revocation_heads")
    op.drop_table("ticket_revocations")
    op.drop_index("uq_ticket_keys_active", table_name="ticket_keys")
    op.drop_index("uq_ticket_keys_event_id_kid", table_name="ticket_keys")
    op.drop_table("ticket_keys")
