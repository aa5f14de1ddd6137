"""The booking protocol (DESIGN §4): hold, confirm, cancel, read.

Each use case works in the caller's unit of work and never commits: the request (or
task) scope commits once. Seats are locked through `app.crud.inventory`, whose docstring
gives the lock order: chosen seats another buyer is locking right now are skipped
(`SKIP LOCKED`) and reported taken at once; the booking row is locked before its seats.
The partial unique index on active claims (booking_seats) is the backstop.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from app.core.config import get_settings
from app.core.db import UnitOfWork
from app.core.errors import (
    Conflict,
    HoldExpired,
    InvalidState,
    NotEnoughSeats,
    NotFound,
    PaymentDeclined,
    SeatsUnavailable,
)
from app.core.security import new_ticket_code
from app.crud import bookings as crud
from app.crud import inventory
from app.crud import waitlist as waitlist_crud
from app.crud.inventory import LockedSeat
from app.infra import outbox, ratelimit
from app.models import (
    Booking,
    BookingSource,
    BookingStatus,
    Role,
    SeatStatus,
    Ticket,
    User,
    WaitlistStatus,
)
from app.schemas.booking import BookedSeat, BookingCreate, BookingRead, ConfirmRequest, TicketRead
from app.schemas.common import Page
from app.services import inventory as rules
from app.services import notifications, tickets, waitlist, webhooks

DECLINING_TOKEN = "fail"
SEATS_BUSY = "Those seats are being booked by someone else right now; try again."
BOOKING_BUSY = "This booking is being changed by another request; try again."


async def hold(
    uow: UnitOfWork, user: User, request: BookingCreate, key: str | None = None
) -> BookingRead:
    """Hold the asked seats (by id, or any N) for `HOLD_MINUTES`: all or nothing."""
    await ratelimit.hit(ratelimit.holds_per_user(), str(user.id))
    with rules.contention(lambda: SeatsUnavailable(SEATS_BUSY)):
        seats = await _lock_seats(uow, user, request)
        # Seats first: under a rush most holds are refused here, one statement in. Seats
        # found prove the event exists; with none, the event's own state answers first.
        if seats:
            _check_seats(request, seats)
        # Read the event only now, after the seat locks: an event cancelled meanwhile is seen.
        state = await inventory.sale_state(uow.session, user.id, request.event_id)
        state = rules.check_on_sale(request.event_id, state)
        _check_seats(request, seats)
        rules.check_user_cap(state.claimed_by_user, len(seats))
        booking = rules.pending_booking(user.id, request.event_id, seats, BookingSource.DIRECT, key)
        booking.id = await rules.hold_seats(uow, booking, seats)
        await _pass_on_outlived(uow, request.event_id, seats)
    return _read(booking, seats, [])


async def _pass_on_outlived(uow: UnitOfWork, event_id: int, seats: Sequence[LockedSeat]) -> None:
    """Lapsed holds this one took seats from have just expired (`rules.hold_seats`): the
    seats they still had are passed on and the offers behind them closed, as the sweeper
    would; else those seats stayed held by an expired booking, never swept (the sweeper
    looks for pending ones), and out of reach of the waitlist. Seats locked by another
    transaction are skipped: that one is taking them."""
    outlived = sorted({s.booking_id for s in seats if s.booking_id is not None})
    if not outlived:
        return
    rest = await inventory.lock_seats_of_bookings(uow.session, outlived)
    await waitlist_crud.set_status_for_bookings(uow.session, outlived, WaitlistStatus.EXPIRED)
    await waitlist.pass_on(uow, event_id, rest)


async def _lock_seats(uow: UnitOfWork, user: User, request: BookingCreate) -> list[LockedSeat]:
    if request.seat_ids is not None:
        return await inventory.lock_chosen(uow.session, user.id, request.event_id, request.seat_ids)
    assert request.quantity is not None
    return await inventory.lock_any(
        uow.session, user.id, request.event_id, request.quantity, request.section
    )


def _check_seats(request: BookingCreate, seats: Sequence[LockedSeat]) -> None:
    if request.seat_ids is None:
        if len(seats) < (request.quantity or 0):
            raise NotEnoughSeats(
                f"Only {len(seats)} of the {request.quantity} requested seats are free right now.",
                available=len(seats),
            )
        return
    missing = sorted(set(request.seat_ids) - {s.id for s in seats if s.free})
    if missing:
        raise SeatsUnavailable(
            f"{len(missing)} of the requested seats are taken, held, or not part of this event.",
            seat_ids=missing,
        )


async def confirm(
    uow: UnitOfWork, user: User, booking_id: int, request: ConfirmRequest
) -> BookingRead:
    """Pay (simulated) for a pending hold: seats become booked and tickets are issued."""
    with rules.contention(lambda: Conflict(BOOKING_BUSY)):
        booking = await _confirm(uow, user, booking_id, request)
    return await read(uow, booking)


async def _confirm(
    uow: UnitOfWork, user: User, booking_id: int, request: ConfirmRequest
) -> Booking:
    session = uow.session
    booking = await inventory.lock_booking(session, booking_id)
    if booking is None or booking.user_id != user.id:
        raise NotFound(f"Booking {booking_id} does not exist.")
    if booking.status == BookingStatus.CONFIRMED:
        return booking  # confirming twice returns the same result
    if booking.status == BookingStatus.CANCELLED:
        raise InvalidState("This booking was cancelled; it cannot be confirmed.")
    if booking.status == BookingStatus.EXPIRED or _lapsed(booking):
        raise HoldExpired()
    seats = await inventory.lock_booking_seats(session, booking.id)
    if not seats or any(s.booking_id != booking.id for s in seats):
        raise HoldExpired()
    if request.payment_token == DECLINING_TOKEN:
        raise PaymentDeclined()
    await inventory.book_seats(session, booking.id)
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = datetime.now(UTC)
    signer = await tickets.signer(uow, booking.event_id)
    await crud.add_tickets(session, [_ticket(booking, s, signer) for s in seats])
    rules.announce(uow, booking.event_id, seats, SeatStatus.BOOKED)
    await waitlist_crud.set_status_for_bookings(session, [booking.id], WaitlistStatus.FULFILLED)
    await outbox.enqueue(uow, notifications.BOOKING_CONFIRMED, booking_id=booking.id)
    await webhooks.booking_confirmed(uow, booking, [s.label for s in seats])
    return booking


async def extend(uow: UnitOfWork, user: User, booking_id: int) -> BookingRead:
    """Renew a pending hold: it lasts `HOLD_MINUTES` from now, at most `HOLD_MAX_RENEWALS` times.

    A renewal restarts the clock rather than adding to it, so renewing early gains nothing
    and no hold outlives (1 + HOLD_MAX_RENEWALS) x HOLD_MINUTES. Waitlist offers are not
    renewable: their deadline is what keeps the next person in line from waiting forever.
    The seats stay held throughout, so nothing is announced and no cache changes.
    """
    with rules.contention(lambda: Conflict(BOOKING_BUSY)):
        booking = await _extend(uow, user, booking_id)
    return await read(uow, booking)


async def _extend(uow: UnitOfWork, user: User, booking_id: int) -> Booking:
    settings = get_settings()
    booking = await inventory.lock_booking(uow.session, booking_id)
    if booking is None or booking.user_id != user.id:
        raise NotFound(f"Booking {booking_id} does not exist.")
    if booking.status == BookingStatus.EXPIRED or (
        booking.status == BookingStatus.PENDING and _lapsed(booking)
    ):
        raise HoldExpired("This hold has already expired; it can no longer be renewed.")
    if booking.status != BookingStatus.PENDING:
        raise InvalidState(f"This booking is {booking.status.value}; only a hold can be renewed.")
    if booking.source == BookingSource.WAITLIST:
        raise InvalidState(
            "A waitlist offer keeps its own deadline and cannot be renewed.",
            code="offer_not_renewable",
        )
    if booking.renewals >= settings.hold_max_renewals:
        raise InvalidState(
            f"This hold was already renewed {booking.renewals} times, the most allowed.",
            code="renewal_limit",
        )
    await inventory.lock_booking_seats(uow.session, booking.id)
    until = datetime.now(UTC) + timedelta(minutes=settings.hold_minutes)
    await inventory.extend_hold(uow.session, booking.id, until)
    await uow.session.refresh(booking)
    return booking


def _lapsed(booking: Booking) -> bool:
    return booking.expires_at is not None and booking.expires_at <= datetime.now(UTC)


def _ticket(booking: Booking, seat: LockedSeat, signer: tickets.Signer) -> Ticket:
    code = new_ticket_code()
    return Ticket(
        booking_id=booking.id, seat_id=seat.id, code=code, qr_code_data=signer.sign(seat.id, code)
    )


async def cancel(uow: UnitOfWork, user: User, booking_id: int) -> BookingRead:
    """Cancel a pending or confirmed booking (owner or admin); its seats become free."""
    with rules.contention(lambda: Conflict(BOOKING_BUSY)):
        booking = await _cancel(uow, user, booking_id)
    return await read(uow, booking)


async def _cancel(uow: UnitOfWork, user: User, booking_id: int) -> Booking:
    session = uow.session
    booking = await inventory.lock_booking(session, booking_id)
    if booking is None or not _may_see(user, booking):
        raise NotFound(f"Booking {booking_id} does not exist.")
    if booking.status == BookingStatus.EXPIRED or (
        booking.status == BookingStatus.PENDING and _lapsed(booking)
    ):
        raise InvalidState("This hold has already expired; there is nothing to cancel.")
    if booking.status == BookingStatus.CANCELLED:
        return booking
    was_confirmed = booking.status == BookingStatus.CONFIRMED
    seats = await inventory.lock_booking_seats(session, booking.id)
    await inventory.cancel_bookings(session, [booking.id])
    await waitlist_crud.set_status_for_bookings(session, [booking.id], WaitlistStatus.LEFT)
    await waitlist.pass_on(uow, booking.event_id, [s for s in seats if s.booking_id == booking.id])
    await session.refresh(booking)
    if was_confirmed or booking.user_id != user.id:
        await outbox.enqueue(uow, notifications.BOOKING_CANCELLED, booking_id=booking.id)
    await webhooks.booking_cancelled(uow, booking, was_confirmed=was_confirmed)
    return booking


def _may_see(user: User, booking: Booking) -> bool:
    return booking.user_id == user.id or user.role == Role.ADMIN


async def get(uow: UnitOfWork, user: User, booking_id: int) -> BookingRead:
    """One booking with its seats and tickets; another user's booking does not exist."""
    booking = await crud.get(uow.session, booking_id)
    if booking is None or not _may_see(user, booking):
        raise NotFound(f"Booking {booking_id} does not exist.")
    return await read(uow, booking)


async def list_mine(uow: UnitOfWork, user: User, limit: int, offset: int) -> Page[BookingRead]:
    """The caller's bookings, newest first."""
    rows, total = await crud.list_for_user(uow.session, user.id, limit, offset)
    ids = [b.id for b in rows]
    seats, tickets = await crud.seats_of(uow.session, ids), await crud.tickets_of(uow.session, ids)
    items = [_read(b, seats[b.id], tickets[b.id]) for b in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


async def read(uow: UnitOfWork, booking: Booking) -> BookingRead:
    seats = (await crud.seats_of(uow.session, [booking.id]))[booking.id]
    tickets = (await crud.tickets_of(uow.session, [booking.id]))[booking.id]
    return _read(booking, seats, tickets)


def _read(
    booking: Booking,
    seats: Sequence[LockedSeat] | Sequence[tuple[int, str, str, int]],
    tickets: Sequence[Ticket],
) -> BookingRead:
    status = booking.status
    if status == BookingStatus.PENDING and _lapsed(booking):
        status = BookingStatus.EXPIRED  # shown as it is, before the sweeper records it
    return BookingRead(
        id=booking.id,
        event_id=booking.event_id,
        user_id=booking.user_id,
        status=status,
        source=booking.source,
        seats=[_booked_seat(s) for s in seats],
        total_cents=booking.total_cents,
        expires_at=booking.expires_at,
        created_at=booking.created_at,
        confirmed_at=booking.confirmed_at,
        cancelled_at=booking.cancelled_at,
        tickets=[TicketRead.model_validate(t) for t in tickets],
    )


def _booked_seat(seat: LockedSeat | tuple[int, str, str, int]) -> BookedSeat:
    if isinstance(seat, LockedSeat):
        return BookedSeat(
            id=seat.id, label=seat.label, section=seat.section, price_cents=seat.price_cents
        )
    return BookedSeat(id=seat[0], label=seat[1], section=seat[2], price_cents=seat[3])
