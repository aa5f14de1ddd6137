"""Admission at the door: a ticket's signature is verified and it is admitted once.

Codes are EVT2 (Ed25519, `app.services.tickets`). The HMAC codes of before (EVT1) still
admit, but only for tickets that were issued as EVT1 (before the switch), and only until
TICKET_HMAC_ACCEPTED_UNTIL when that is set: a new ticket cannot be presented as EVT1.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from app.core import ticket_codes
from app.core.config import get_settings
from app.core.db import UnitOfWork
from app.core.errors import BadRequest, Conflict, Forbidden, NotFound
from app.core.security import verify_ticket
from app.models import Booking, BookingStatus, Event, Role, Seat, Ticket, User
from app.schemas.checkin import CheckinRead, CheckinRequest
from app.services import tickets

LEGACY_PREFIX = "EVT1."


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"


def _invalid(
    detail: str = "This QR code is not a valid Evently ticket (bad signature).",
) -> BadRequest:
    return BadRequest(detail, code="invalid_ticket")


@dataclass(frozen=True)
class Scanned:
    code: str
    vouched: tuple[int, int] | None = None  # (event, seat) a verified signature vouches for
    legacy: bool = False  # an EVT1 (HMAC) code


async def _scanned(uow: UnitOfWork, request: CheckinRequest) -> Scanned:
    if request.qr_code_data is None:
        assert request.code is not None
        return Scanned(request.code.strip().upper())
    qr = request.qr_code_data.strip()
    if qr.startswith(LEGACY_PREFIX):
        return _legacy(qr)
    try:
        claim, _, _ = ticket_codes.parse(qr)
        keys = await tickets.public_keys(uow, claim.event_id, claim.kid)
        ticket_codes.verify(qr, keys)
    except ticket_codes.InvalidTicket as exc:
        raise _invalid() from exc
    return Scanned(claim.code, (claim.event_id, claim.seat_id))


def _legacy(qr: str) -> Scanned:
    until = get_settings().ticket_hmac_accepted_until
    if until is not None and datetime.now(UTC) >= until:
        raise _invalid("EVT1 ticket codes are no longer accepted; show the EVT2 code.")
    verified = verify_ticket(qr)
    if verified is None:
        raise _invalid()
    event_id, seat_id, code = verified
    return Scanned(code, (event_id, seat_id), legacy=True)


async def check_in(uow: UnitOfWork, staff: User, request: CheckinRequest) -> CheckinRead:
    """Admit a ticket once, for the event's organizer or an admin."""
    scanned = await _scanned(uow, request)
    row = (
        await uow.session.execute(
            select(Ticket, Booking, Event, Seat.label, User.email)
            .join(Booking, Booking.id == Ticket.booking_id)
            .join(Event, Event.id == Booking.event_id)
            .join(Seat, Seat.id == Ticket.seat_id)
            .join(User, User.id == Booking.user_id)
            .where(Ticket.code == scanned.code)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("No ticket has this code.")
    ticket, booking, event, label, holder = row
    _check(staff, request, scanned, ticket, booking, event)
    admitted, replayed = await _admit(uow, ticket.id, request.nonce)
    return CheckinRead(
        ticket_id=ticket.id,
        code=ticket.code,
        booking_id=booking.id,
        event_id=event.id,
        seat_label=label,
        holder=holder,
        checked_in_at=admitted,
        replayed=replayed,
    )


def _check(
    staff: User,
    request: CheckinRequest,
    scanned: Scanned,
    ticket: Ticket,
    booking: Booking,
    event: Event,
) -> None:
    if staff.role != Role.ADMIN and event.organizer_id != staff.id:
        raise Forbidden("Only the event's organizer or an admin can check tickets in.")
    if scanned.vouched is not None and scanned.vouched != (event.id, ticket.seat_id):
        raise _invalid("This QR code does not match the ticket it names.")
    if scanned.legacy and not ticket.qr_code_data.startswith(LEGACY_PREFIX):
        raise _invalid("This ticket was issued with an EVT2 code; show that code.")
    if request.event_id is not None and request.event_id != event.id:
        raise Conflict(f"This ticket is for another event ({event.name}).", code="wrong_event")
    if booking.status != BookingStatus.CONFIRMED:
        raise Conflict(
            f"This ticket's booking is {booking.status.value}; it does not admit.", code="not_valid"
        )


async def _admit(uow: UnitOfWork, ticket_id: int, nonce: str | None) -> tuple[datetime, bool]:
    """(admission time, whether this scan was admitted before); a second entry is refused."""
    admitted = await uow.session.scalar(
        update(Ticket)
        .where(Ticket.id == ticket_id, Ticket.checked_in_at.is_(None))
        .values(checked_in_at=func.now(), checkin_nonce=nonce)
        .returning(Ticket.checked_in_at)
    )
    if admitted is not None:  # the conditional update makes "once" hold under concurrent scans
        return admitted, False
    first, first_nonce = (
        await uow.session.execute(
            select(Ticket.checked_in_at, Ticket.checkin_nonce).where(Ticket.id == ticket_id)
        )
    ).one()
    if nonce is not None and nonce == first_nonce and first is not None:
        return first, True  # the same scan uploaded again: the first answer, not an entry
    raise AlreadyCheckedIn(
        f"Already checked in at {first:%Y-%m-%d %H:%M:%S %Z}." if first else "Already checked in.",
        checked_in_at=first.isoformat() if first else None,
    )
