"""Queries on events and their seat inventory. Never commits."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Select, bindparam, case, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Prepared
from app.crud.inventory import seat_is_free
from app.models import Event, EventStatus, Seat, SeatStatus
from app.schemas.event import EventFilters

SeatRow = tuple[int, str, str, str, int, int]


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


_EVENT = bindparam("event_id", type_=Integer)
_SEAT_LAYOUT = Prepared(
    select(Seat.id, Seat.label, Seat.section, Seat.row, Seat.number, Seat.price_cents).where(
        Seat.event_id == _EVENT
    )
)
_SEAT_STATES = Prepared(
    select(Seat.id, case((seat_is_free(), SeatStatus.AVAILABLE.value), else_=Seat.status)).where(
        Seat.event_id == _EVENT
    )
)
# No ORDER BY in either: sorting a stadium's 50,000 rows spilled to disk in PostgreSQL,
# while rows come back in insertion order, almost always id order, which Python sorts in
# a few milliseconds.


async def seat_layout(session: AsyncSession, event_id: int) -> list[SeatRow]:
    """(id, label, section, row, number, price) of every seat, in id order: what never
    changes once the event exists."""
    return sorted(await _SEAT_LAYOUT.fetch(session, event_id=event_id), key=_seat_id)


async def seat_states(session: AsyncSession, event_id: int) -> list[tuple[int, str]]:
    """(id, status a buyer sees) of every seat, in id order (an expired hold shows as
    available)."""
    return sorted(await _SEAT_STATES.fetch(session, event_id=event_id), key=_seat_id)


def _seat_id(row: Sequence[Any]) -> int:
    return int(row[0])


async def insert_seats(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    if rows:
        await session.execute(insert(Seat), rows)
