from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, str_enum, utc_timestamp
from app.models.enums import SeatStatus


class Seat(Base):
    """One sellable place. General admission gets one row per admission (GA-1 … GA-N)."""

    __tablename__ = "seats"
    __table_args__ = (
        Index("uq_seats_event_id_label", "event_id", "label", unique=True),
        Index("ix_seats_event_id_status", "event_id", "status"),
        # Confirm, cancel and the sweeper find a booking's seats by this column.
        Index("ix_seats_booking_id", "booking_id", postgresql_where=text("booking_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    )
    section: Mapped[str] = mapped_column(String(60), nullable=False)
    row: Mapped[str] = mapped_column(String(20), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[str] = mapped_column(String(100), nullable=False)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[SeatStatus] = mapped_column(
        str_enum(SeatStatus, "seat_status"), nullable=False, default=SeatStatus.AVAILABLE
    )
    # Plain integer, not a foreign key: seats and bookings reference each other, and the
    # claim that the database enforces lives in booking_seats.
    booking_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    held_until: Mapped[datetime | None] = utc_timestamp()
