"""Queries on bookings, their seat claims and tickets. Never commits.

The locking queries live here; the order in which a use case calls them (and so the
order in which locks are taken) is decided in `app.services.booking`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.crud.events import seat_is_free
from app.models import Booking, BookingSeat, BookingSource, BookingStatus, Seat, SeatStatus, Ticket


@dataclass(frozen=True)
class LockedSeat:
    id: int
    label: str
    section: str
    price_cents: int
    free: bool
    booking_id: int | None


LOCKED_COLUMNS = (
    Seat.id,
    Seat.label,
    Seat.section,
    Seat.price_cents,
    seat_is_free().label("free"),
    Seat.booking_id,
)


async def seats_claimed_by_user(session: AsyncSession, user_id: int, event_id: int) -> int:
    """Seats the user holds (unexpired) or has bought for an event."""
    live = or_(
        Booking.status == BookingStatus.CONFIRMED,
        and_(Booking.status == BookingStatus.PENDING, Booking.expires_at > func.now()),
    )
    stmt = (
        select(func.count())
        .select_from(BookingSeat)
        .join(Booking, Booking.id == BookingSeat.booking_id)
        .where(Booking.user_id == user_id, Booking.event_id == event_id, BookingSeat.active, live)
    )
    return (await session.scalar(stmt)) or 0


async def expire_bookings(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    """Mark lapsed pending bookings expired and drop their claims (their seats are free)."""
    if not booking_ids:
        return
    ids = list(booking_ids)
    await session.execute(
        update(Booking)
        .where(Booking.id.in_(ids), Booking.status == BookingStatus.PENDING)
        .values(status=BookingStatus.EXPIRED)
    )
    await deactivate_claims(session, ids)


async def deactivate_claims(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    await session.execute(
        update(BookingSeat)
        .where(BookingSeat.booking_id.in_(list(booking_ids)), BookingSeat.active)
        .values(active=False)
    )


def new_pending_booking(
    user_id: int,
    event_id: int,
    seats: Sequence[LockedSeat],
    minutes: int,
    source: BookingSource,
    idempotency_key: str | None = None,
) -> Booking:
    """A pending booking (not yet added) for `seats`, expiring in `minutes`."""
    now = datetime.now(UTC)
    return Booking(
        user_id=user_id,
        event_id=event_id,
        status=BookingStatus.PENDING,
        source=source,
        total_cents=sum(s.price_cents for s in seats),
        expires_at=now + timedelta(minutes=minutes),
        created_at=now,
        idempotency_key=idempotency_key,
    )


async def add_pending_booking(
    session: AsyncSession,
    user_id: int,
    event_id: int,
    seats: Sequence[LockedSeat],
    minutes: int,
    source: BookingSource,
) -> Booking:
    """A pending booking holding `seats` (locked by the caller) for `minutes`."""
    booking = new_pending_booking(user_id, event_id, seats, minutes, source)
    await add_booking(session, booking, seats)
    return booking


async def add_booking(session: AsyncSession, booking: Booking, seats: Sequence[LockedSeat]) -> None:
    """Insert the booking, its claims, and point the seats at it as held."""
    session.add(booking)
    await session.flush()
    await session.execute(
        insert(BookingSeat),
        [{"booking_id": booking.id, "seat_id": s.id, "price_cents": s.price_cents} for s in seats],
    )
    await session.execute(
        update(Seat)
        .where(Seat.id.in_([s.id for s in seats]))
        .values(status=SeatStatus.HELD, booking_id=booking.id, held_until=booking.expires_at)
    )


async def get(session: AsyncSession, booking_id: int) -> Booking | None:
    return await session.get(Booking, booking_id)


async def get_for_update(session: AsyncSession, booking_id: int) -> Booking | None:
    stmt = select(Booking).where(Booking.id == booking_id).with_for_update()
    return await session.scalar(stmt)


async def lock_booking_seats(session: AsyncSession, booking_id: int) -> list[LockedSeat]:
    """Lock the seats a booking claims, in id order."""
    stmt = (
        select(*LOCKED_COLUMNS)
        .join(BookingSeat, BookingSeat.seat_id == Seat.id)
        .where(BookingSeat.booking_id == booking_id, BookingSeat.active)
        .order_by(Seat.id)
        .with_for_update(of=Seat)
    )
    return [LockedSeat(*row) for row in await session.execute(stmt)]


async def set_seats(
    session: AsyncSession, booking_id: int, status: SeatStatus, held_until: datetime | None = None
) -> None:
    """Move the seats still pointing at a booking to `status` (available frees them)."""
    values: dict[str, object] = {"status": status, "held_until": held_until}
    if status == SeatStatus.AVAILABLE:
        values["booking_id"] = None
    await session.execute(update(Seat).where(Seat.booking_id == booking_id).values(**values))


async def seats_of(
    session: AsyncSession, booking_ids: Sequence[int]
) -> dict[int, list[tuple[int, str, str, int]]]:
    """booking id -> [(seat id, label, section, price)] for every seat it ever claimed."""
    stmt = (
        select(BookingSeat.booking_id, Seat.id, Seat.label, Seat.section, BookingSeat.price_cents)
        .join(Seat, Seat.id == BookingSeat.seat_id)
        .where(BookingSeat.booking_id.in_(list(booking_ids)))
        .order_by(Seat.id)
    )
    result: dict[int, list[tuple[int, str, str, int]]] = {b: [] for b in booking_ids}
    for booking_id, seat_id, label, section, price in await session.execute(stmt):
        result[booking_id].append((seat_id, label, section, price))
    return result


async def tickets_of(session: AsyncSession, booking_ids: Sequence[int]) -> dict[int, list[Ticket]]:
    stmt = select(Ticket).where(Ticket.booking_id.in_(list(booking_ids))).order_by(Ticket.id)
    result: dict[int, list[Ticket]] = {b: [] for b in booking_ids}
    for ticket in await session.scalars(stmt):
        result[ticket.booking_id].append(ticket)
    return result


async def add_tickets(session: AsyncSession, tickets: Sequence[Ticket]) -> None:
    session.add_all(tickets)
    await session.flush()


async def list_for_user(
    session: AsyncSession, user_id: int, limit: int, offset: int
) -> tuple[Sequence[Booking], int]:
    total = await session.scalar(
        select(func.count()).select_from(Booking).where(Booking.user_id == user_id)
    )
    stmt = (
        select(Booking)
        .where(Booking.user_id == user_id)
        .order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(stmt)).all(), total or 0


async def active_booking_ids_for_event(session: AsyncSession, event_id: int) -> list[int]:
    stmt = select(Booking.id).where(
        Booking.event_id == event_id,
        Booking.status.in_([BookingStatus.PENDING, BookingStatus.CONFIRMED]),
    )
    return list(await session.scalars(stmt))


async def cancel_bookings(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    if not booking_ids:
        return
    await session.execute(
        update(Booking)
        .where(Booking.id.in_(list(booking_ids)))
        .values(status=BookingStatus.CANCELLED, cancelled_at=func.now())
    )
    await deactivate_claims(session, booking_ids)


async def lock_all_seats(session: AsyncSession, event_id: int) -> None:
    """Lock every seat of an event in id order (waits for holds in flight to finish)."""
    stmt = select(Seat.id).where(Seat.event_id == event_id).order_by(Seat.id).with_for_update()
    await session.execute(stmt)


async def lock_available_seats(
    session: AsyncSession, event_id: int, limit: int
) -> list[LockedSeat]:
    """Seats nobody holds, skipping rows locked right now (for waitlist offers)."""
    stmt = (
        select(*LOCKED_COLUMNS)
        .where(Seat.event_id == event_id, Seat.status == SeatStatus.AVAILABLE)
        .order_by(Seat.id)
        .limit(limit)
        .with_for_update(of=Seat, skip_locked=True)
    )
    return [LockedSeat(*row) for row in await session.execute(stmt)]


async def free_seats(session: AsyncSession, seat_ids: Sequence[int]) -> None:
    if seat_ids:
        await session.execute(
            update(Seat)
            .where(Seat.id.in_(list(seat_ids)))
            .values(status=SeatStatus.AVAILABLE, booking_id=None, held_until=None)
        )


async def due_for_expiry(session: AsyncSession, limit: int) -> list[tuple[int, int]]:
    """(booking id, event id) of pending bookings past their expiry, locked, skipping busy ones."""
    stmt = (
        select(Booking.id, Booking.event_id)
        .where(Booking.status == BookingStatus.PENDING, Booking.expires_at < func.now())
        .order_by(Booking.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(b, e) for b, e in await session.execute(stmt)]


async def lock_seats_of_bookings(
    session: AsyncSession, booking_ids: Sequence[int]
) -> list[LockedSeat]:
    """Seats still pointing at these bookings, in id order; rows locked by others are skipped."""
    stmt = (
        select(*LOCKED_COLUMNS)
        .where(Seat.booking_id.in_(list(booking_ids)))
        .order_by(Seat.id)
        .with_for_update(of=Seat, skip_locked=True)
    )
    return [LockedSeat(*row) for row in await session.execute(stmt)]


async def users_of(session: AsyncSession, booking_ids: Sequence[int]) -> list[int]:
    if not booking_ids:
        return []
    stmt = select(Booking.user_id).where(Booking.id.in_(list(booking_ids))).distinct()
    return sorted(await session.scalars(stmt))
