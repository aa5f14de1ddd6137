from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, utc_timestamp


class Webhook(Base):
    """An organizer's subscription: which event types, for which events, to which URL.

    Scope: `event_id` set, that event only; else the events of `organizer_id`; both unset
    (only an admin may create that), every event.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    organizer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    # Text: a URL of 2,000 characters (the input limit) may grow when it is normalised
    # (percent-encoding, punycode); the stored form is whatever it became.
    url: Mapped[str] = mapped_column(Text, nullable=False)
    # Kept readable: every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(200), nullable=False)
    events: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    disabled_at: Mapped[datetime | None] = utc_timestamp()
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookDelivery(Base):
    """One event for one webhook: its frozen body, and where its delivery stands.

    The row is also the retry schedule: `next_attempt_at` says when it is due again and a
    beat sweep picks up what is due; `leased_until` keeps two senders off one delivery.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_key", name="uq_webhook_deliveries_webhook_event"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    )
    event_type: Mapped[str] = mapped_column(String(40), nullable=False)
    # What happened, once: a re-run of the same trigger finds its delivery already there.
    event_key: Mapped[str] = mapped_column(String(200), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    first_attempt_at: Mapped[datetime | None] = utc_timestamp()  # the retry window starts
    last_attempt_at: Mapped[datetime | None] = utc_timestamp()
    next_attempt_at: Mapped[datetime | None] = utc_timestamp()
    leased_until: Mapped[datetime | None] = utc_timestamp()
    delivered_at: Mapped[datetime | None] = utc_timestamp()
