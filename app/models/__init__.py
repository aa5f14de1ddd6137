"""All ORM models, imported here so Alembic and mappers see every table."""

from app.models.analytics import AnalyticsReport
from app.models.base import Base
from app.models.booking import Booking, BookingSeat
from app.models.enums import (
    BookingSource,
    BookingStatus,
    EventStatus,
    ReportPeriod,
    Role,
    Seating,
    SeatStatus,
    WaitlistStatus,
)
from app.models.event import Event
from app.models.idempotency import IdempotencyRecord
from app.models.notification import Notification
from app.models.outbox import OutboxJob
from app.models.seat import Seat
from app.models.ticket import Ticket
from app.models.ticket_key import TicketKey, TicketRevocation, TicketRevocationHead
from app.models.user import User
from app.models.waitlist import WaitlistEntry
from app.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "AnalyticsReport",
    "Base",
    "Booking",
    "BookingSeat",
    "BookingSource",
    "BookingStatus",
    "Event",
    "EventStatus",
    "IdempotencyRecord",
    "Notification",
    "OutboxJob",
    "ReportPeriod",
    "Role",
    "Seat",
    "SeatStatus",
    "Seating",
    "Ticket",
    "TicketKey",
    "TicketRevocation",
    "TicketRevocationHead",
    "User",
    "WaitlistEntry",
    "WaitlistStatus",
    "Webhook",
    "WebhookDelivery",
]
