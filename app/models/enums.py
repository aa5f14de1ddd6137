"""The closed vocabularies of the domain."""

import enum


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    ORGANIZER = "organizer"
    ADMIN = "admin"


class EventStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class Seating(enum.StrEnum):
    SEATED = "seated"
    GENERAL_ADMISSION = "general_admission"


class SeatStatus(enum.StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    BOOKED = "booked"


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class BookingSource(enum.StrEnum):
    DIRECT = "direct"
    WAITLIST = "waitlist"


class WaitlistStatus(enum.StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    FULFILLED = "fulfilled"
    EXPIRED = "expired"
    LEFT = "left"


class ReportPeriod(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
