"""All ORM models, imported here so Alembic and mappers see every table."""

from app.models.base import Base
from app.models.booking import Booking, BookingSeat
from app.models.enums import BookingSource, BookingStatus, EventStatus, Role, Seating, SeatStatus
from app.models.event import Event
from app.models.idempotency import IdempotencyRecord
from app.models.seat import Seat
from app.models.ticket import Ticket
from app.models.user import User

__all__ = [
    "Base",
    "Booking",
    "BookingSeat",
    "BookingSource",
    "BookingStatus",
    "Event",
    "EventStatus",
    "IdempotencyRecord",
    "Role",
    "Seat",
    "SeatStatus",
    "Seating",
    "Ticket",
    "User",
]
