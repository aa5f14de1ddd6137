"""The booking protocol (DESIGN §4): hold, confirm, cancel, read.

Every use case is one transaction. Seat rows are the lock: they are always locked in id
order, with the connection's short `lock_timeout`, and a lock failure is a 409. The
partial unique index on active claims (booking_seats) is the backstop.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core.config import get_settings
from app.core.db import UNIQUE_VIOLATION, UnitOfWork, is_lock_failure, sqlstate
from app.core.errors import (
    Conflict,
    HoldExpired,
    InvalidState,
    NotEnoughSeats,
    NotFound,
    PaymentDeclined,
    SeatLimitExceeded,
    SeatsUnavailable,
)
from app.core.security import new_ticket_code, sign_ticket
from app.crud import bookings as crud
from app.crud import holds
from app.crud import waitlist as waitlist_crud
from app.crud.bookings import LockedSeat
from app.models import (
    Booking,
    BookingSource,
    BookingStatus,
    EventStatus,
    Role,
    SeatStatus,
    Ticket,
    User,
    WaitlistStatus,
)
from app.schemas.booking import BookedSeat, BookingCreate, BookingRead, ConfirmRequest, TicketRead
from app.schemas.common import Page
from app.services import changes, idempotency, jobs, notifications, ratelimit, waitlist
from app.services.idempotency import Outcome

DECLINING_TOKEN = "fail"


async def hold(
    uow: UnitOfWork, user: User, request: BookingCreate, key: str | None = None
) -> Outcome:
    """Hold the asked seats (by id, or any N) for `HOLD_MINUTES`: all or nothing."""
    await ratelimit.hit(ratelimit.holds_per_user(), str(user.id))
    asked = request.model_dump(mode="json")

    async def action() -> Outcome:
        booking, seats = await _hold(uow, user, request, key)
        return Outcome(201, _read(booking, seats, []).model_dump_json().encode())

    try:
        return await idempotency.run_once(
            uow, user.id, key, idempotency.fingerprint("hold", asked), action
        )
    except DBAPIError as exc:
        raise _as_conflict(exc) from exc


async def _hold(
    uow: UnitOfWork, user: User, request: BookingCreate, key: str | None
) -> tuple[Booking, list[LockedSeat]]:
    session, settings = uow.session, get_settings()
    if request.seat_ids is not None:
        seats = await holds.lock_chosen(
            session,
            user.id,
            request.event_id,
            request.seat_ids,
            lock=settings.booking_locks_enabled,
        )
    else:
        assert request.quantity is not None
        seats = await holds.lock_any(
            session, user.id, request.event_id, request.quantity, request.section
        )
    # Read the event only now, after the seat locks: an event cancelled meanwhile is seen.
    state = await holds.sale_state(session, user.id, request.event_id)
    _check_on_sale(request.event_id, state)
    _check_seats(request, seats)
    assert state is not None
    _check_user_cap(state.claimed_by_user, len(seats))
    lapsed = sorted({s.booking_id for s in seats if s.booking_id is not None})
    await crud.expire_bookings(session, lapsed)
    booking = crud.new_pending_booking(
        user.id, request.event_id, seats, settings.hold_minutes, BookingSource.DIRECT, key
    )
    hold = await holds.insert_hold(session, booking, seats)
    booking.id = hold.booking_id
    counts = {"available": hold.available, "held": hold.held, "booked": hold.booked}
    changes.seats_changed(uow, request.event_id, [s.id for s in seats], SeatStatus.HELD, counts)
    return booking, seats


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


def _check_on_sale(event_id: int, state: holds.SaleState | None) -> None:
    if state is None or state.status == EventStatus.DRAFT:
        raise NotFound(f"Event {event_id} does not exist.")
    if state.status != EventStatus.PUBLISHED:
        raise InvalidState(f"Event {event_id} is {state.status.value}; it is not on sale.")
    if state.starts_at <= datetime.now(UTC):
        raise InvalidState(f"Event {event_id} has already started; it is not on sale.")


def _check_user_cap(already: int, adding: int) -> None:
    cap = get_settings().max_seats_per_user_per_event
    if already + adding > cap:
        raise SeatLimitExceeded(
            f"You may hold or buy at most {cap} seats for this event; you have {already}.",
            limit=cap,
            current=already,
        )


def _as_conflict(exc: DBAPIError) -> Exception:
    """Lock timeouts and (should the locks ever be bypassed) backstop hits are 409s."""
    if is_lock_failure(exc):
        return SeatsUnavailable(
            "Those seats are being booked by someone else right now; try again."
        )
    if isinstance(exc, IntegrityError) and sqlstate(exc) == UNIQUE_VIOLATION:
        return SeatsUnavailable("Some of the requested seats were just taken.")
    return exc


async def confirm(
    uow: UnitOfWork, user: User, booking_id: int, request: ConfirmRequest, key: str | None = None
) -> Outcome:
    """Pay (simulated) for a pending hold: seats become booked and tickets are issued."""

    async def action() -> Outcome:
        booking = await _confirm(uow, user, booking_id, request)
        return Outcome(200, (await read(uow, booking)).model_dump_json().encode())

    asked = {"booking_id": booking_id, **request.model_dump(mode="json")}
    try:
        return await idempotency.run_once(
            uow, user.id, key, idempotency.fingerprint("confirm", asked), action
        )
    except DBAPIError as exc:
        if is_lock_failure(exc):
            raise Conflict("This booking is being changed by another request; try again.") from exc
        raise


async def _confirm(
    uow: UnitOfWork, user: User, booking_id: int, request: ConfirmRequest
) -> Booking:
    session = uow.session
    booking = await crud.get_for_update(session, booking_id)
    if booking is None or booking.user_id != user.id:
        raise NotFound(f"Booking {booking_id} does not exist.")
    if booking.status == BookingStatus.CONFIRMED:
        return booking  # confirming twice returns the same result
    if booking.status == BookingStatus.CANCELLED:
        raise InvalidState("This booking was cancelled; it cannot be confirmed.")
    if booking.status == BookingStatus.EXPIRED or _lapsed(booking):
        raise HoldExpired()
    seats = await crud.lock_booking_seats(session, booking.id)
    if not seats or any(s.booking_id != booking.id for s in seats):
        raise HoldExpired()
    if request.payment_token == DECLINING_TOKEN:
        raise PaymentDeclined()
    await crud.set_seats(session, booking.id, SeatStatus.BOOKED)
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = datetime.now(UTC)
    await crud.add_tickets(session, [_ticket(booking, s) for s in seats])
    await session.flush()
    await changes.seats_changed_counted(
        uow, booking.event_id, [s.id for s in seats], SeatStatus.BOOKED
    )
    await waitlist_crud.set_status_for_bookings(session, [booking.id], WaitlistStatus.FULFILLED)
    await jobs.enqueue(uow, notifications.BOOKING_CONFIRMED, booking_id=booking.id)
    return booking


def _lapsed(booking: Booking) -> bool:
    return booking.expires_at is not None and booking.expires_at <= datetime.now(UTC)


def _ticket(booking: Booking, seat: LockedSeat) -> Ticket:
    code = new_ticket_code()
    return Ticket(
        booking_id=booking.id,
        seat_id=seat.id,
        code=code,
        qr_code_data=sign_ticket(booking.event_id, seat.id, code),
    )


async def cancel(uow: UnitOfWork, user: User, booking_id: int) -> BookingRead:
    """Cancel a pending or confirmed booking (owner or admin); its seats become free."""
    session = uow.session
    booking = await crud.get_for_update(session, booking_id)
    if booking is None or not _may_see(user, booking):
        raise NotFound(f"Booking {booking_id} does not exist.")
    if booking.status == BookingStatus.EXPIRED or (
        booking.status == BookingStatus.PENDING and _lapsed(booking)
    ):
        raise InvalidState("This hold has already expired; there is nothing to cancel.")
    if booking.status != BookingStatus.CANCELLED:
        was_confirmed = booking.status == BookingStatus.CONFIRMED
        seats = await crud.lock_booking_seats(session, booking.id)
        await crud.cancel_bookings(session, [booking.id])
        await waitlist_crud.set_status_for_bookings(session, [booking.id], WaitlistStatus.LEFT)
        await release_seats(uow, booking.event_id, [s for s in seats if s.booking_id == booking.id])
        await session.refresh(booking)
        if was_confirmed or booking.user_id != user.id:
            await jobs.enqueue(uow, notifications.BOOKING_CANCELLED, booking_id=booking.id)
    result = await read(uow, booking)
    await uow.commit()
    return result


async def release_seats(uow: UnitOfWork, event_id: int, seats: Sequence[LockedSeat]) -> None:
    """Seats (locked) whose booking ended: waiting entries first, the public after."""
    if not seats:
        return
    offered = await waitlist.offer_freed(uow, event_id, seats)
    public = [s.id for s in seats if s.id not in set(offered)]
    await crud.free_seats(uow.session, public)
    if public:
        await changes.seats_changed_counted(uow, event_id, public, SeatStatus.AVAILABLE)
    if offered:
        await changes.seats_changed_counted(uow, event_id, offered, SeatStatus.HELD)


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
