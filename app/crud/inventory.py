"""Every statement that reads or locks seats for a sale: the inventory. Never commits.

What "free" means, the shape of a locked seat, the one way to insert a booking, the one
count of seats a user holds, and every `FOR UPDATE`, all live here.

Lock order (why no two use cases can deadlock):

- **hold** (chosen or any N): the user's per-event advisory lock, then seats in id order
  (`FOR UPDATE SKIP LOCKED`, so a seat another buyer is locking is reported taken at
  once), then the lapsed bookings those seats still point at (marked expired).
- **confirm / cancel**: the booking row, then its seats in id order.
- **expire** (the sweeper): bookings, skipping locked ones, then their seats, skipping
  locked ones. **Event cancel**: the event row, then all its seats in id order.
- **waitlist offer**: runs inside a cancel or an expiry, after their seat locks; it
  locks waiting entries and extra available seats with `SKIP LOCKED`.

Seats are always locked in id order, and every lock taken after seats is either taken
with SKIP LOCKED or on a row no one locks seats-first *and then waits for*: a hold never
waits for a booking row (the lapsed bookings it marks are past their expiry, which no
confirm accepts), and confirm/cancel take the booking before any seat. So no cycle of
waits can form; `lock_timeout` (per connection) bounds any wait that remains.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import memo
from app.core.db import Prepared
from app.crud import ticket_keys
from app.models import (
    Booking,
    BookingSeat,
    BookingSource,
    BookingStatus,
    Event,
    EventStatus,
    Seat,
    SeatStatus,
    WaitlistEntry,
    WaitlistStatus,
)

USER, EVENT = bindparam("user_id", type_=Integer), bindparam("event_id", type_=Integer)
SEAT_IDS = bindparam("seat_ids", type_=ARRAY(Integer))
LIMIT, START = bindparam("limit", type_=Integer), bindparam("start", type_=Integer)
SECTION = bindparam("section", type_=String)


def seat_is_free() -> ColumnElement[bool]:
    """A seat is free when available, or held by a hold that has already expired.

    Except while the event has a waiting list: then a lapsed hold waits for the sweeper,
    which offers the seat to the queue first (DESIGN: freed seats go to the waitlist).
    """
    queue = (
        select(WaitlistEntry.id)
        .where(
            WaitlistEntry.event_id == Seat.event_id, WaitlistEntry.status == WaitlistStatus.WAITING
        )
        .exists()
    )
    return or_(
        Seat.status == SeatStatus.AVAILABLE,
        and_(Seat.status == SeatStatus.HELD, Seat.held_until < func.now(), ~queue),
    )


@dataclass(frozen=True)
class LockedSeat:
    id: int
    label: str
    section: str
    price_cents: int
    free: bool
    booking_id: int | None
    status: str  # as stored (a lapsed hold is still "held")


LOCKED_COLUMNS = (
    Seat.id,
    Seat.label,
    Seat.section,
    Seat.price_cents,
    seat_is_free().label("free"),
    Seat.booking_id,
    Seat.status,
)


@dataclass(frozen=True)
class SaleState:
    status: EventStatus
    starts_at: datetime
    claimed_by_user: int


@dataclass(frozen=True)
class Totals:
    """An event's seats by the status a buyer sees, as live messages carry them."""

    available: int
    held: int
    booked: int


@dataclass(frozen=True)
class Counts:
    total: int
    available: int
    held: int
    booked: int
    price_min: int | None
    price_max: int | None

    @property
    def totals(self) -> Totals:
        return Totals(self.available, self.held, self.booked)


# -- hold: lock the seats ------------------------------------------------------------


def seats_for_hold(
    where: ColumnElement[bool], *, limit: bool = False, lock: bool = True
) -> Prepared:
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


CHOSEN = Seat.id == func.any(SEAT_IDS)
# The seam of the negative-control test, which swaps in `seats_for_hold(CHOSEN, lock=False)`
# to show that the concurrency tests catch an oversell when seats are not locked.
CHOSEN_SEATS = seats_for_hold(CHOSEN)
_IN_SECTION = func.lower(Seat.section) == func.lower(SECTION)
_ANY_FROM = seats_for_hold(and_(seat_is_free(), Seat.id >= START), limit=True)
_ANY_BEFORE = seats_for_hold(and_(seat_is_free(), Seat.id < START), limit=True)
_ANY_FROM_SECTION = seats_for_hold(and_(seat_is_free(), Seat.id >= START, _IN_SECTION), limit=True)
_ANY_BEFORE_SECTION = seats_for_hold(and_(seat_is_free(), Seat.id < START, _IN_SECTION), limit=True)
_SEAT_RANGE = Prepared(select(func.min(Seat.id), func.max(Seat.id)).where(Seat.event_id == EVENT))


async def lock_chosen(
    session: AsyncSession, user_id: int, event_id: int, seat_ids: Sequence[int]
) -> list[LockedSeat]:
    """Lock the asked seats in id order; a seat another buyer is locking right now is left
    out (reported unavailable at once instead of queueing behind that buyer)."""
    rows = await CHOSEN_SEATS.execute(
        session, user_id=user_id, event_id=event_id, seat_ids=list(seat_ids)
    )
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
    span = memo.seat_ranges.get(event_id)
    if span is None:
        lo, hi = (await _SEAT_RANGE.execute(session, event_id=event_id)).one()
        if lo is None:
            return None
        span = memo.seat_ranges[event_id] = (lo, hi)
    return span


# -- the sale state and the per-user count -------------------------------------------


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
    """The event's status and start, and how many seats the user holds (unexpired) or
    has bought there; None when the event does not exist."""
    row = (await _SALE_STATE.execute(session, user_id=user_id, event_id=event_id)).one_or_none()
    return SaleState(EventStatus(row[0]), row[1], row[2]) if row is not None else None


async def counts(session: AsyncSession, event_id: int) -> Counts:
    """The event's seats by the status a buyer sees (a lapsed hold counts as available),
    and its price range."""
    free, booked = seat_is_free(), Seat.status == SeatStatus.BOOKED
    stmt = select(
        func.count(),
        func.count().filter(free),
        func.count().filter(~free & ~booked),
        func.count().filter(booked),
        func.min(Seat.price_cents),
        func.max(Seat.price_cents),
    ).where(Seat.event_id == event_id)
    return Counts(*(await session.execute(stmt)).one())


_STORED_COUNTS = Prepared(
    select(
        func.count().filter(Seat.status == SeatStatus.AVAILABLE),
        func.count().filter(Seat.status == SeatStatus.HELD),
        func.count().filter(Seat.status == SeatStatus.BOOKED),
    ).where(Seat.event_id == EVENT)
)


_COUNTED_IN_SNAPSHOT = Prepared(
    select(
        func.count().filter(Seat.status == SeatStatus.AVAILABLE),
        func.count().filter(Seat.status == SeatStatus.HELD),
        func.count().filter(Seat.status == SeatStatus.BOOKED),
        cast(func.pg_current_snapshot(), Text),
    ).where(Seat.event_id == EVENT)
)


async def counts_in_snapshot(session: AsyncSession, event_id: int) -> tuple[Totals, str]:
    """`stored_counts`, with the snapshot they were counted in (`xmin:xmax:xip,...`, read
    in the same statement, so the same snapshot): which transactions they include."""
    *row, snapshot = (await _COUNTED_IN_SNAPSHOT.execute(session, event_id=event_id)).one()
    return Totals(*row), snapshot


async def stored_counts(session: AsyncSession, event_id: int) -> Totals:
    """The event's seats by stored status (a lapsed hold counts as held until the sweeper
    releases it): the counts live messages carry, kept in Redis between recounts."""
    row = (await _STORED_COUNTS.execute(session, event_id=event_id)).one()
    return Totals(*row)


# -- writing a hold ------------------------------------------------------------------


def new_pending_booking(
    user_id: int,
    event_id: int,
    seats: Sequence[LockedSeat],
    minutes: int,
    source: BookingSource,
    idempotency_key: str | None = None,
) -> Booking:
    """A pending booking (not yet written) for `seats`, expiring in `minutes`."""
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


def _insert_booking() -> Prepared:
    """Insert a booking with its claims and mark the seats held: one statement of
    data-modifying CTEs. Nothing in it grows with the size of the venue."""
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
    return Prepared(select(new.c.id).select_from(new).add_cte(claims, held))


_INSERT_BOOKING = _insert_booking()


async def insert_booking(
    session: AsyncSession, booking: Booking, seats: Sequence[LockedSeat]
) -> int:
    """Write `booking` (not added to the session) holding `seats`, locked by the caller:
    the only way a booking is written. Returns its id."""
    result = await _INSERT_BOOKING.execute(
        session,
        user_id=booking.user_id,
        event_id=booking.event_id,
        total_cents=booking.total_cents,
        expires_at=booking.expires_at,
        idempotency_key=booking.idempotency_key,
        source=booking.source.value,
        created_at=booking.created_at,
        seat_ids=[s.id for s in seats],
    )
    booking_id: int = result.scalar_one()
    return booking_id


# -- locking what exists: bookings and their seats -------------------------------------


async def lock_booking(session: AsyncSession, booking_id: int) -> Booking | None:
    """The booking row, locked (confirm and cancel take it before its seats)."""
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


async def extend_hold(session: AsyncSession, booking_id: int, until: datetime) -> None:
    """Move a locked pending booking's expiry, and its seats' `held_until`, to `until`."""
    await session.execute(
        update(Seat).where(Seat.booking_id == booking_id).values(held_until=until)
    )
    await session.execute(
        update(Booking)
        .where(Booking.id == booking_id)
        .values(expires_at=until, renewals=Booking.renewals + 1)
        .execution_options(synchronize_session="fetch")
    )


async def lock_due_for_expiry(session: AsyncSession, limit: int) -> list[tuple[int, int]]:
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


async def lock_all_seats(session: AsyncSession, event_id: int) -> None:
    """Lock every seat of an event in id order (waits for holds in flight to finish)."""
    stmt = select(Seat.id).where(Seat.event_id == event_id).order_by(Seat.id).with_for_update()
    await session.execute(stmt)


# -- changing locked rows --------------------------------------------------------------


async def book_seats(session: AsyncSession, booking_id: int) -> None:
    """The seats still pointing at a booking become booked (confirm)."""
    await session.execute(
        update(Seat)
        .where(Seat.booking_id == booking_id)
        .values(status=SeatStatus.BOOKED, held_until=None)
    )


async def free_seats(session: AsyncSession, seat_ids: Sequence[int]) -> None:
    if seat_ids:
        await session.execute(
            update(Seat)
            .where(Seat.id.in_(list(seat_ids)))
            .values(status=SeatStatus.AVAILABLE, booking_id=None, held_until=None)
        )


async def free_all_seats(session: AsyncSession, event_id: int) -> None:
    await session.execute(
        update(Seat)
        .where(Seat.event_id == event_id)
        .values(status=SeatStatus.AVAILABLE, booking_id=None, held_until=None)
    )


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
    await _deactivate_claims(session, ids)


async def cancel_bookings(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    if not booking_ids:
        return
    await session.execute(
        update(Booking)
        .where(Booking.id.in_(list(booking_ids)))
        .values(status=BookingStatus.CANCELLED, cancelled_at=func.now())
    )
    await _deactivate_claims(session, booking_ids)
    # Here, the one place bookings are cancelled: no path can cancel and forget to revoke.
    await ticket_keys.revoke_for_bookings(session, booking_ids)


async def _deactivate_claims(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    await session.execute(
        update(BookingSeat)
        .where(BookingSeat.booking_id.in_(list(booking_ids)), BookingSeat.active)
        .values(active=False)
    )
