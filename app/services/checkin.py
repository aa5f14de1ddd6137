"""Admission at the door: a ticket's signature is verified and it is admitted once."""

from sqlalchemy import func, select, update

from app.core.db import UnitOfWork
from app.core.errors import BadRequest, Conflict, Forbidden, NotFound
from app.core.security import verify_ticket
from app.models import Booking, BookingStatus, Event, Role, Seat, Ticket, User
from app.schemas.checkin import CheckinRead, CheckinRequest


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"


def _code_from(request: CheckinRequest) -> tuple[str, tuple[int, int] | None]:
    """The ticket code, and (event, seat) the signature vouches for when a QR was scanned."""
    if request.qr_code_data is None:
        assert request.code is not None
        return request.code.strip().upper(), None
    verified = verify_ticket(request.qr_code_data)
    if verified is None:
        raise BadRequest(
            "This QR code is not a valid Evently ticket (bad signature).", code="invalid_ticket"
        )
    event_id, seat_id, code = verified
    return code, (event_id, seat_id)


async def check_in(uow: UnitOfWork, staff: User, request: CheckinRequest) -> CheckinRead:
    """Admit a ticket once, for the event's organizer or an admin."""
    code, vouched = _code_from(request)
    row = (
        await uow.session.execute(
            select(Ticket, Booking, Event, Seat.label, User.email)
            .join(Booking, Booking.id == Ticket.booking_id)
            .join(Event, Event.id == Booking.event_id)
            .join(Seat, Seat.id == Ticket.seat_id)
            .join(User, User.id == Booking.user_id)
            .where(Ticket.code == code)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("No ticket has this code.")
    ticket, booking, event, label, holder = row
    if staff.role != Role.ADMIN and event.organizer_id != staff.id:
        raise Forbidden("Only the event's organizer or an admin can check tickets in.")
    if vouched is not None and vouched != (event.id, ticket.seat_id):
        raise BadRequest("This QR code does not match the ticket it names.", code="invalid_ticket")
    if request.event_id is not None and request.event_id != event.id:
        raise Conflict(f"This ticket is for another event ({event.name}).", code="wrong_event")
    if booking.status != BookingStatus.CONFIRMED:
        raise Conflict(
            f"This ticket's booking is {booking.status.value}; it does not admit.", code="not_valid"
        )
    admitted = await uow.session.scalar(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.checked_in_at.is_(None))
        .values(checked_in_at=func.now())
        .returning(Ticket.checked_in_at)
    )
    if admitted is None:  # the conditional update makes "once" hold under concurrent scans
        first = await uow.session.scalar(
            select(Ticket.checked_in_at)
            .where(Ticket.id == ticket.id)
            .execution_options(populate_existing=True)
        )
        raise AlreadyCheckedIn(
            f"Already checked in at {first:%Y-%m-%d %H:%M:%S %Z}."
            if first
            else "Already checked in.",
            checked_in_at=first.isoformat() if first else None,
        )
    return CheckinRead(
        ticket_id=ticket.id,
        code=ticket.code,
        booking_id=booking.id,
        event_id=event.id,
        seat_label=label,
        holder=holder,
        checked_in_at=admitted,
    )
