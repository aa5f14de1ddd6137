"""Ticket signing keys (one Ed25519 pair per event, rotated) and the revocation list."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, utc_timestamp


class TicketKey(Base):
    """A signing key of an event. The one with no `retired_at` signs new tickets; retired
    ones stay published so the tickets they signed still verify."""

    __tablename__ = "ticket_keys"
    __table_args__ = (
        Index("uq_ticket_keys_event_id_kid", "event_id", "kid", unique=True),
        # At most one signing key per event: concurrent first sales create it once.
        Index(
            "uq_ticket_keys_active",
            "event_id",
            unique=True,
            postgresql_where=text("retired_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    )
    kid: Mapped[str] = mapped_column(String(16), nullable=False)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # nonce || AES-GCM(private key) under a key derived from SECRET_KEY (app.core.keystore)
    private_key_sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    retired_at: Mapped[datetime | None] = utc_timestamp()


class TicketRevocation(Base):
    """A cancelled ticket on its event's revocation list; `seq` is the list's cursor."""

    __tablename__ = "ticket_revocations"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    revoked_at: Mapped[datetime] = created_at_column()


class TicketRevocationHead(Base):
    """The last `seq` given out per event. Its row lock, held until commit, orders the
    revocations of an event, so a reader's cursor never skips one committed late."""

    __tablename__ = "ticket_revocation_heads"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
