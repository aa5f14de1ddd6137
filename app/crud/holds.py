"""The queries of the hold hot path: few round trips, compiled once.

A hold is: lock the seats (taking the per-user lock in the same statement), read the
event's sale state with the user's seat count, then one statement that inserts the
booking and its claims, points the seats at it, and counts the event's seats for live
clients. Each is a SQLAlchemy expression compiled at import (`Prepared`).
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Prepared
from app.crud.bookings import LOCKED_COLUMNS, LockedSeat
from app.crud.events import seat_is_free
from app.models import Booking, BookingSeat, BookingStatus, Event, EventStatus, Seat, SeatStatus

USER, EVENT = bindparam("user_id", type_=Integer), bindparam("event_id", type_=Integer)
SEAT_IDS = bindparam("seat_ids", type_=ARRAY(Integer))
LIMIT, START = bindparam("limit", type_=Integer), bindparam("start", type_=Integer)
SECTION = bindparam("section", type_=String)


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


def _locking(where: ColumnElement[bool], *, limit: bool = False, lock: bool = True) -> Prepared:
    """Seats of the event matching `where`, joined to a one-row CTE that takes the user's
    per-event advisory lock. That lock serialises one user's holds on one event (so the
    per-user cap cannot be raced) without a round trip of its own; it is held before the
    sale state is read. Rows other buyers are locking right now are skipped."""
    user_lock = select(func.pg_advisory_xact_lock(USER, EVENT).label("locked")).cte("user_lock")
    stmt: Select[*tuple[object, ...]] = (
        select(*LOCKED_COLUMNS)
        .join(user_lock, true())
        .where(Seat.event_id == EVENT, where)
        .order_by(Seat.id)
    )
    if limit:
        stmt = stmt.limit(LIMIT)
    if lock:
        stmt = stmt.with_for_update(of=Seat, skip_locked=True)
    return Prepared(stmt)


_CHOSEN = _locking(Seat.id == func.any(SEAT_IDS))
_CHOSEN_UNLOCKED = _locking(Seat.id == func.any(SEAT_IDS), lock=False)  # negative control only
_ANY_FROM = _locking(and_(seat_is_free(), Seat.id >= START), limit=True)
_ANY_BEFORE = _locking(and_(seat_is_free(), Seat.id < START), limit=True)
_IN_SECTION = func.lower(Seat.section) == func.lower(SECTION)
_ANY_FROM_SECTION = _locking(and_(seat_is_free(), Seat.id >= START, _IN_SECTION), limit=True)
_ANY_BEFORE_SECTION = _locking(and_(seat_is_free(), Seat.id < START, _IN_SECTION), limit=True)
_SEAT_RANGE = Prepared(select(func.min(Seat.id), func.max(Seat.id)).where(Seat.event_id == EVENT))

# Seat ids of an event never change once it is created: remember each event's id range.
_seat_ranges: dict[int, tuple[int, int]] = {}


async def lock_chosen(
    session: AsyncSession,
    user_id: int,
    event_id: int,
    seat_ids: Sequence[int],
    *,
    lock: bool = True,
) -> list[LockedSeat]:
    """Lock the asked seats in id order; a seat another buyer is locking right now is left
    out (reported unavailable at once instead of queueing behind that buyer)."""
    query = _CHOSEN if lock else _CHOSEN_UNLOCKED
    rows = await query.execute(session, user_id=user_id, event_id=event_id, seat_ids=list(seat_ids))
    return [LockedSeat(*row) for row in rows]


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
    params = {"user_id": user_id, "event_id": event_id, "start": random.randint(*span)}
    if section is not None:
        params["section"] = section  # type: ignore[assignment]
    after, before = (
        (_ANY_FROM, _ANY_BEFORE) if section is None else (_ANY_FROM_SECTION, _ANY_BEFORE_SECTION)
    )
    found = [LockedSeat(*row) for row in await after.execute(session, limit=quantity, **params)]
    if len(found) < quantity:
        rest = await before.execute(session, limit=quantity - len(found), **params)
        found = sorted([*found, *(LockedSeat(*row) for row in rest)], key=lambda s: s.id)
    return found


async def _seat_range(session: AsyncSession, event_id: int) -> tuple[int, int] | None:
    if event_id not in _seat_ranges:
        lo, hi = (await _SEAT_RANGE.execute(session, event_id=event_id)).one()
        if lo is None:
            return None
        _seat_ranges[event_id] = (lo, hi)
    return _seat_ranges[event_id]


def _claimed_by_user() -> ColumnElement[int]:
    live = or_(
        Booking.status == BookingStatus.CONFIRMED,
        and_(Booking.status == BookingStatus.PENDING, Booking.expires_at > func.now()),
    )
    return (
        select(func.count())
        .select_from(BookingSeat)
        .join(Booking, Booking.id == BookingSeat.booking_id)
        .where(Booking.user_id == USER, Booking.event_id == EVENT, BookingSeat.active, live)
        .scalar_subquery()
    )


_SALE_STATE = Prepared(
    select(Event.status, Event.starts_at, _claimed_by_user()).where(Event.id == EVENT)
)


async def sale_state(session: AsyncSession, user_id: int, event_id: int) -> SaleState | None:
    """The event's status and start, and how many seats the user holds or owns there."""
    row = (await _SALE_STATE.execute(session, user_id=user_id, event_id=event_id)).one_or_none()
    return SaleState(EventStatus(row[0]), row[1], row[2]) if row is not None else None


def _insert_hold() -> Prepared:
    """Insert a booking with its claims, mark the seats held, count the event's seats:
    one statement of data-modifying CTEs. The counts come from the statement's snapshot,
    before its own change; `insert_hold` adjusts them."""
    expires_at = bindparam("expires_at", type_=DateTime(timezone=True))
    new = (
        insert(Booking)
        .values(
            user_id=USER,
            event_id=EVENT,
            status=BookingStatus.PENDING.value,
            total_cents=bindparam("total_cents"),
            expires_at=expires_at,
            idempotency_key=bindparam("idempotency_key"),
            source=bindparam("source"),
            created_at=bindparam("created_at"),
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
            .join(Seat, Seat.id == func.any(SEAT_IDS)),
        )
        .cte("claims")
    )
    held = (
        update(Seat)
        .where(Seat.id == func.any(SEAT_IDS))
        .values(
            status=SeatStatus.HELD.value,
            booking_id=select(new.c.id).scalar_subquery(),
            held_until=expires_at,
        )
        .cte("held")
    )
    free, is_booked = seat_is_free(), Seat.status == SeatStatus.BOOKED
    counts = (
        select(
            func.count().filter(free).label("free"),
            func.count().filter(is_booked).label("booked"),
            func.count().label("total"),
        )
        .where(Seat.event_id == EVENT)
        .cte("counts")
    )
    stmt = (
        select(new.c.id, counts.c.free, counts.c.booked, counts.c.total)
        .select_from(new)
        .join(counts, true())
        .add_cte(claims, held)
    )
    return Prepared(stmt)


_INSERT_HOLD = _insert_hold()


async def insert_hold(
    session: AsyncSession, booking: Booking, seats: Sequence[LockedSeat]
) -> NewHold:
    """Write `booking` (not yet added to the session) holding `seats`, locked by the caller."""
    ids = [s.id for s in seats]
    row = (
        await _INSERT_HOLD.execute(
            session,
            user_id=booking.user_id,
            event_id=booking.event_id,
            total_cents=booking.total_cents,
            expires_at=booking.expires_at,
            idempotency_key=booking.idempotency_key,
            source=booking.source.value,
            created_at=booking.created_at,
            seat_ids=ids,
        )
    ).one()
    booking_id, available, sold, capacity = row
    available -= len(ids)
    return NewHold(booking_id, available, capacity - available - sold, sold)
