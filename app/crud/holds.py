"""The queries of the hold hot path, each doing as much as it can in one round trip.

A hold is: lock the seats (taking the per-user lock in the same statement), read the
event's sale state with the user's seat count, then one statement that inserts the
booking and its claims, points the seats at it, and reads the counts for live clients.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVarTuple

from sqlalchemy import Select, and_, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.crud.bookings import LOCKED_COLUMNS, LockedSeat
from app.crud.events import seat_is_free
from app.models import Booking, BookingSeat, BookingStatus, Event, EventStatus, Seat, SeatStatus

Ts = TypeVarTuple("Ts")

# Seat ids of an event never change once it is created: remember each event's id range.
_seat_ranges: dict[int, tuple[int, int]] = {}


@dataclass(frozen=True)
class SaleState:
    status: EventStatus
    starts_at: datetime
    claimed_by_user: int


@dataclass(frozen=True)
class NewHold:
    booking_id: int
    available: int
    held: int
    booked: int


def _with_user_lock(stmt: Select[*Ts], user_id: int, event_id: int) -> Select[*Ts]:
    """Join a one-row CTE that takes the user's per-event advisory lock.

    It serialises one user's holds on one event (so the per-user cap cannot be raced)
    without a round trip of its own; it is held before the sale state is read.
    """
    user_lock = select(func.pg_advisory_xact_lock(user_id, event_id).label("locked")).cte(
        "user_lock"
    )
    return stmt.join(user_lock, true())


async def lock_chosen(
    session: AsyncSession,
    user_id: int,
    event_id: int,
    seat_ids: Sequence[int],
    *,
    lock: bool = True,
) -> list[LockedSeat]:
    """Lock the asked seats in id order; seats another buyer is locking right now are
    skipped (reported as unavailable at once instead of queueing behind them)."""
    stmt = select(*LOCKED_COLUMNS).where(Seat.event_id == event_id, Seat.id.in_(list(seat_ids)))
    stmt = _with_user_lock(stmt, user_id, event_id).order_by(Seat.id)
    if lock:
        stmt = stmt.with_for_update(of=Seat, skip_locked=True)
    return [LockedSeat(*row) for row in await session.execute(stmt)]


async def _seat_range(session: AsyncSession, event_id: int) -> tuple[int, int] | None:
    if event_id not in _seat_ranges:
        lo, hi = (
            await session.execute(
                select(func.min(Seat.id), func.max(Seat.id)).where(Seat.event_id == event_id)
            )
        ).one()
        if lo is None:
            return None
        _seat_ranges[event_id] = (lo, hi)
    return _seat_ranges[event_id]


async def lock_any(
    session: AsyncSession, user_id: int, event_id: int, quantity: int, section: str | None
) -> list[LockedSeat]:
    """Up to `quantity` free seats, skipping rows other buyers have locked.

    The scan starts at a random seat and wraps around: under a rush, buyers spread over
    the event instead of all walking the same locked rows from the first seat.
    """
    span = await _seat_range(session, event_id)
    if span is None:
        return []
    start = random.randint(*span)
    found = await _lock_free(session, user_id, event_id, quantity, section, Seat.id >= start)
    if len(found) < quantity:
        more = await _lock_free(
            session, user_id, event_id, quantity - len(found), section, Seat.id < start
        )
        found = sorted([*found, *more], key=lambda s: s.id)
    return found


async def _lock_free(
    session: AsyncSession,
    user_id: int,
    event_id: int,
    limit: int,
    section: str | None,
    where: object,
) -> list[LockedSeat]:
    stmt = select(*LOCKED_COLUMNS).where(Seat.event_id == event_id, seat_is_free(), where)  # type: ignore[arg-type]
    if section is not None:
        stmt = stmt.where(func.lower(Seat.section) == section.lower())
    stmt = _with_user_lock(stmt, user_id, event_id)
    stmt = stmt.order_by(Seat.id).limit(limit).with_for_update(of=Seat, skip_locked=True)
    return [LockedSeat(*row) for row in await session.execute(stmt)]


async def sale_state(session: AsyncSession, user_id: int, event_id: int) -> SaleState | None:
    """The event's status and start, and how many seats the user holds or owns there."""
    live = or_(
        Booking.status == BookingStatus.CONFIRMED,
        and_(Booking.status == BookingStatus.PENDING, Booking.expires_at > func.now()),
    )
    claimed = (
        select(func.count())
        .select_from(BookingSeat)
        .join(Booking, Booking.id == BookingSeat.booking_id)
        .where(Booking.user_id == user_id, Booking.event_id == event_id, BookingSeat.active, live)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            select(Event.status, Event.starts_at, claimed).where(Event.id == event_id)
        )
    ).one_or_none()
    return SaleState(*row) if row is not None else None


async def insert_hold(
    session: AsyncSession,
    booking: Booking,
    seats: Sequence[LockedSeat],
) -> NewHold:
    """Insert `booking` with its claims, mark the seats held, and count the event's seats,
    in one statement (data-modifying CTEs). The counts are read from the statement's
    snapshot, before its own change, and adjusted for it."""
    ids = [s.id for s in seats]
    new = (
        insert(Booking)
        .values(
            user_id=booking.user_id,
            event_id=booking.event_id,
            status=booking.status,
            total_cents=booking.total_cents,
            expires_at=booking.expires_at,
            idempotency_key=booking.idempotency_key,
            source=booking.source,
            created_at=booking.created_at,
        )
        .returning(Booking.id)
        .cte("new_booking")
    )
    claims = (
        insert(BookingSeat)
        .from_select(
            ["booking_id", "seat_id", "price_cents", "active"],
            select(new.c.id, Seat.id, Seat.price_cents, true())
        .select_from(new)
        .join(Seat, Seat.id.in_(ids)),
        )
        .cte("claims")
    )
    held = (
        update(Seat)
        .where(Seat.id.in_(ids))
        .values(
            status=SeatStatus.HELD,
            booking_id=select(new.c.id).scalar_subquery(),
            held_until=booking.expires_at,
        )
        .cte("held")
    )
    of_event = Seat.event_id == booking.event_id
    free = select(func.count()).where(of_event, seat_is_free()).scalar_subquery()
    booked = (
        select(func.count()).where(of_event, Seat.status == SeatStatus.BOOKED).scalar_subquery()
    )
    total = select(func.count()).where(of_event).scalar_subquery()
    stmt = select(new.c.id, free, booked, total).add_cte(claims, held)
    booking_id, available, sold, capacity = (await session.execute(stmt)).one()
    available -= len(ids)
    return NewHold(booking_id, available, capacity - available - sold, sold)
