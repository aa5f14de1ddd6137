"""The vocabulary of the CSV exports (their rows are written by `app.services.exports`)."""

import enum


class TicketState(enum.StrEnum):
    """A ticket as the door sees it."""

    VALID = "valid"  # its booking is confirmed; not scanned yet
    CHECKED_IN = "checked_in"  # its booking is confirmed; admitted at `checked_in_at`
    CANCELLED = "cancelled"  # its booking was cancelled: it no longer admits


class AttendeeFilter(enum.StrEnum):
    """`?status=` of the attendee export: one ticket state, or `confirmed` (both states of
    a ticket whose booking is confirmed, the list of people expected at the door)."""

    CONFIRMED = "confirmed"
    VALID = "valid"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"


class SummaryView(enum.StrEnum):
    """`?by=` of the summary export: which table of the summary."""

    EVENT = "event"  # one row per event: capacity, seats sold, utilization, revenue, ...
    DAY = "day"  # one row per day with bookings (last 30 days)
    METRIC = "metric"  # one row per figure of the whole scope (bookings by status, ...)


ATTENDEE_COLUMNS = (
    "ticket_code",
    "seat_label",
    "section",
    "price",
    "buyer_email",
    "buyer_name",
    "booking_id",
    "booking_status",
    "ticket_status",
    "checked_in_at",
    "issued_at",
)

SUMMARY_COLUMNS = (
    "event_id",
    "event_name",
    "capacity",
    "seats_sold",
    "utilization",
    "revenue",
    "waitlist",
    "top_rank",  # 1-5 for the top events by seats sold, empty for the others
)
