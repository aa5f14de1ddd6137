from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, str_enum, utc_timestamp
from app.models.enums import BookingSource, BookingStatus


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_user_id_created_at", "user_id", "created_at"),
        Index("ix_bookings_status_expires_at", "status", "expires_at"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_bookings_user_id_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), index=True, nullable=False
    )
    status: Mapped[BookingStatus] = mapped_column(
        str_enum(BookingStatus, "booking_status"), nullable=False, default=BookingStatus.PENDING
    )
    total_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime | None] = utc_timestamp()
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Times the buyer renewed the hold (POST /bookings/{id}/extend), at most HOLD_MAX_RENEWALS.
    renewals: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    source: Mapped[BookingSource] = mapped_column(
        str_enum(BookingSource, "booking_source"), nullable=False, default=BookingSource.DIRECT
    )
    created_at: Mapped[datetime] = created_at_column()
    confirmed_at: Mapped[datetime | None] = utc_timestamp()
    cancelled_at: Mapped[datetime | None] = utc_timestamp()


class BookingSeat(Base):
    """A booking's claim on one seat; `active` while the booking is pending or confirmed.

    The partial unique index on (seat_id) WHERE active is the last line of defence: even
    if the row locks were bypassed, PostgreSQL refuses a second active claim on a seat.
    """

    __tablename__ = "booking_seats"
    __table_args__ = (
        Index(
            "uq_booking_seats_active_seat",
            "seat_id",
            unique=True,
            postgresql_where=text("active"),
        ),
    )

    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), primary_key=True
    )
    seat_id: Mapped[int] = mapped_column(
        ForeignKey("seats.id", ondelete="CASCADE"), primary_key=True
    )
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
