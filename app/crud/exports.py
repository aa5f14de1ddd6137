"""Queries of the CSV exports: an event's tickets, a page of bookings at a time. Never commits.

Pages are keyset pages of the event's bookings (`id > last`). Paging by ticket id would
need tickets ordered by id *within one event*, which no index gives (tickets know their
event only through their booking): each page would join all the event's remaining tickets
again. A page of bookings reads only bookings rows to find its ids, then only its own
tickets (by `ix_tickets_booking_id`).
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Numeric,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.core.db import Prepared
from app.models import Booking, BookingSeat, BookingStatus, Event, Seat, Ticket, User
from app.schemas.exports import AttendeeFilter, TicketState

_CONFIRMED = Booking.status == BookingStatus.CONFIRMED
_SCANNED = Ticket.checked_in_at.is_not(None)

# The door's view of a ticket: a ticket of a booking that is no longer confirmed is
# cancelled, even if it was scanned before the cancellation (its time is still exported).
TICKET_STATE = case(
    (~_CONFIRMED, TicketState.CANCELLED.value),
    (_SCANNED, TicketState.CHECKED_IN.value),
    else_=TicketState.VALID.value,
)

_FILTERS: dict[AttendeeFilter, ColumnElement[bool]] = {
    AttendeeFilter.CONFIRMED: _CONFIRMED,
    AttendeeFilter.VALID: and_(_CONFIRMED, ~_SCANNED),
    AttendeeFilter.CHECKED_IN: and_(_CONFIRMED, _SCANNED),
    AttendeeFilter.CANCELLED: ~_CONFIRMED,
}


_BOOKING_STATUSES = {
    None: (BookingStatus.CONFIRMED, BookingStatus.CANCELLED),
    AttendeeFilter.CONFIRMED: (BookingStatus.CONFIRMED,),
    AttendeeFilter.VALID: (BookingStatus.CONFIRMED,),
    AttendeeFilter.CHECKED_IN: (BookingStatus.CONFIRMED,),
    AttendeeFilter.CANCELLED: (BookingStatus.CANCELLED,),
}


def _claim_of_ticket() -> list[ColumnElement[bool]]:
    return [BookingSeat.booking_id == Ticket.booking_id, BookingSeat.seat_id == Ticket.seat_id]


async def event_organizer(session: AsyncSession, event_id: int) -> int | None:
    """The organizer of the event, None if there is no such event."""
    return await session.scalar(select(Event.organizer_id).where(Event.id == event_id))


async def booking_page(
    session: AsyncSession, event_id: int, status: AttendeeFilter | None, after: int, limit: int
) -> list[int]:
    """Ids of the event's next `limit` bookings after id `after` that may hold tickets
    (confirmed, or cancelled: tickets are only issued when a booking is confirmed)."""
    wanted = _BOOKING_STATUSES[status]
    stmt = (
        select(Booking.id)
        .where(Booking.event_id == event_id, Booking.id > after, Booking.status.in_(wanted))
        .order_by(Booking.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


def _utc_iso(moment: QueryableAttribute[Any]) -> ColumnElement[str]:
    """ISO 8601 in UTC to the second, `2026-11-22T18:30:05Z` (NULL stays NULL)."""
    return func.to_char(func.timezone("UTC", moment), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')


def _money(cents: ColumnElement[int]) -> ColumnElement[str]:
    """Cents as a decimal amount, `1234` as `12.34`."""
    return func.to_char(cast(cents, Numeric) / 100, "FM9999999990.00")


def _attendees(status: AttendeeFilter | None) -> Prepared:
    stmt = (
        select(
            Ticket.code.label("code"),
            Seat.label.label("label"),
            Seat.section.label("section"),
            # What the buyer paid for the seat (the seat's price for a claim without one).
            _money(func.coalesce(BookingSeat.price_cents, Seat.price_cents)).label("price"),
            User.email.label("email"),
            User.full_name.label("full_name"),
            Booking.id.label("booking_id"),
            Booking.status.label("status"),
            TICKET_STATE.label("state"),
            _utc_iso(Ticket.checked_in_at).label("checked_in_at"),
            _utc_iso(Ticket.created_at).label("issued_at"),
        )
        .join(Booking, Booking.id == Ticket.booking_id)
        .join(Seat, Seat.id == Ticket.seat_id)
        .join(User, User.id == Booking.user_id)
        .outerjoin(BookingSeat, and_(*_claim_of_ticket()))
        .where(Ticket.booking_id == any_(bindparam("booking_ids", type_=ARRAY(Integer))))
        .order_by(Ticket.booking_id, Ticket.id)
    )
    return Prepared(stmt if status is None else stmt.where(_FILTERS[status]))


_ATTENDEES = {status: _attendees(status) for status in (None, *AttendeeFilter)}


async def attendees_of(
    session: AsyncSession, booking_ids: Sequence[int], status: AttendeeFilter | None
) -> list[Any]:
    """The tickets of these bookings, by booking then ticket id, as asyncpg records in the
    order of the CSV's columns (times and prices already formatted by PostgreSQL). Raw
    records: a page holds only them, not them and SQLAlchemy rows besides."""
    return await _ATTENDEES[status].fetch(session, booking_ids=list(booking_ids))
