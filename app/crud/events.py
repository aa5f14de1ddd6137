"""Queries on events and their seat inventory. Never commits."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Row, Select, and_, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, EventStatus, Seat, SeatStatus, WaitlistEntry, WaitlistStatus


@dataclass(frozen=True)
class EventFilters:
    category: str | None = None
    q: str | None = None
    starts_from: datetime | None = None
    starts_to: datetime | None = None


@dataclass(frozen=True)
class Counts:
    total: int
    available: int
    held: int
    booked: int
    price_min: int | None
    price_max: int | None


SeatRow = Row[int, str, str, str, int, int, str]


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


async def get(session: AsyncSession, event_id: int) -> Event | None:
    return await session.get(Event, event_id)


async def get_for_update(session: AsyncSession, event_id: int) -> Event | None:
    stmt = select(Event).where(Event.id == event_id).with_for_update()
    return await session.scalar(stmt)


def _public_listing(filters: EventFilters) -> Select[Event]:
    # Only upcoming events are listed, whatever `from` says.
    stmt = select(Event).where(Event.status == EventStatus.PUBLISHED, Event.starts_at >= func.now())
    if filters.starts_from is not None:
        stmt = stmt.where(Event.starts_at >= filters.starts_from)
    if filters.starts_to is not None:
        stmt = stmt.where(Event.starts_at <= filters.starts_to)
    if filters.category:
        stmt = stmt.where(func.lower(Event.category) == filters.category.lower())
    if filters.q:
        pattern = f"%{_escape_like(filters.q)}%"
        stmt = stmt.where(
            or_(
                Event.name.ilike(pattern, escape="\\"),
                Event.venue.ilike(pattern, escape="\\"),
                Event.description.ilike(pattern, escape="\\"),
            )
        )
    return stmt


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _page(
    session: AsyncSession, stmt: Select[Event], limit: int, offset: int
) -> tuple[Sequence[Event], int]:
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(
        stmt.order_by(Event.starts_at, Event.id).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def list_published(
    session: AsyncSession, filters: EventFilters, limit: int, offset: int
) -> tuple[Sequence[Event], int]:
    return await _page(session, _public_listing(filters), limit, offset)


async def list_managed(
    session: AsyncSession, organizer_id: int | None, limit: int, offset: int
) -> tuple[Sequence[Event], int]:
    """Every event of one organizer (or of everyone when `organizer_id` is None)."""
    stmt = select(Event)
    if organizer_id is not None:
        stmt = stmt.where(Event.organizer_id == organizer_id)
    return await _page(session, stmt, limit, offset)


async def counts(session: AsyncSession, event_id: int) -> Counts:
    free = seat_is_free()
    booked = Seat.status == SeatStatus.BOOKED
    stmt = select(
        func.count(),
        func.count().filter(free),
        func.count().filter(~free & ~booked),
        func.count().filter(booked),
        func.min(Seat.price_cents),
        func.max(Seat.price_cents),
    ).where(Seat.event_id == event_id)
    row = (await session.execute(stmt)).one()
    return Counts(*row)


async def seat_map(session: AsyncSession, event_id: int) -> Sequence[SeatRow]:
    """Seat rows with the status a customer should see (an expired hold shows as available)."""
    shown_status = case((seat_is_free(), SeatStatus.AVAILABLE.value), else_=Seat.status)
    stmt = (
        select(
            Seat.id,
            Seat.label,
            Seat.section,
            Seat.row,
            Seat.number,
            Seat.price_cents,
            shown_status.label("status"),
        )
        .where(Seat.event_id == event_id)
        .order_by(Seat.id)
    )
    return (await session.execute(stmt)).all()


async def insert_seats(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    if rows:
        await session.execute(insert(Seat), rows)


async def release_all_seats(session: AsyncSession, event_id: int) -> None:
    await session.execute(
        update(Seat)
        .where(Seat.event_id == event_id)
        .values(status=SeatStatus.AVAILABLE, booking_id=None, held_until=None)
    )
