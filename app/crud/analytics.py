"""Aggregate queries for analytics: everything is computed by PostgreSQL. Never commits."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Date, Select, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AnalyticsReport,
    Booking,
    BookingStatus,
    Event,
    ReportPeriod,
    Seat,
    SeatStatus,
    WaitlistEntry,
    WaitlistStatus,
)

Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Window:
    """Which events (None: all) and which booking creation times to count."""

    organizer_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _bookings(window: Window) -> list[Any]:
    conditions: list[Any] = []
    if window.organizer_id is not None:
        conditions.append(Event.organizer_id == window.organizer_id)
    if window.since is not None:
        conditions.append(Booking.created_at >= window.since)
    if window.until is not None:
        conditions.append(Booking.created_at < window.until)
    return conditions


def _scoped(stmt: Select[*Ts], window: Window) -> Select[*Ts]:
    return stmt.join(Event, Event.id == Booking.event_id).where(*_bookings(window))


async def bookings_by_status(session: AsyncSession, window: Window) -> dict[str, int]:
    stmt = _scoped(select(Booking.status, func.count()).select_from(Booking), window)
    rows = await session.execute(stmt.group_by(Booking.status))
    counts = {status.value: 0 for status in BookingStatus}
    counts.update({str(status): int(n) for status, n in rows})
    return counts


async def revenue_cents(session: AsyncSession, window: Window) -> int:
    stmt = _scoped(select(func.coalesce(func.sum(Booking.total_cents), 0)), window)
    return int(await session.scalar(stmt.where(Booking.status == BookingStatus.CONFIRMED)) or 0)


async def per_event(session: AsyncSession, window: Window) -> Sequence[Any]:
    """id, name, capacity, seats sold, revenue, waiting entries for each event in scope."""
    sold = (
        select(func.count())
        .where(Seat.event_id == Event.id, Seat.status == SeatStatus.BOOKED)
        .scalar_subquery()
    )
    confirmed = [Booking.status == BookingStatus.CONFIRMED, *_bookings(window)]
    revenue = (
        select(func.coalesce(func.sum(Booking.total_cents), 0))
        .where(Booking.event_id == Event.id, *confirmed)
        .scalar_subquery()
    )
    waiting = (
        select(func.count())
        .where(WaitlistEntry.event_id == Event.id, WaitlistEntry.status == WaitlistStatus.WAITING)
        .scalar_subquery()
    )
    stmt = select(Event.id, Event.name, Event.total_capacity, sold, revenue, waiting)
    if window.organizer_id is not None:
        stmt = stmt.where(Event.organizer_id == window.organizer_id)
    return (await session.execute(stmt.order_by(Event.id))).all()


async def bookings_per_day(
    session: AsyncSession, window: Window, since: datetime
) -> list[dict[str, Any]]:
    day = cast(func.date_trunc("day", Booking.created_at), Date)
    stmt = _scoped(
        select(
            day,
            func.count(),
            func.count().filter(Booking.status == BookingStatus.CONFIRMED),
        ).select_from(Booking),
        window,
    ).where(Booking.created_at >= since)
    rows = await session.execute(stmt.group_by(day).order_by(day))
    return [{"day": d.isoformat(), "bookings": n, "confirmed": c} for d, n, c in rows]


async def store_report(
    session: AsyncSession, period: ReportPeriod, period_start: date, data: dict[str, Any]
) -> None:
    """Write (or rewrite) the report of one period: running it twice keeps one row."""
    stmt = insert(AnalyticsReport).values(period=period, period_start=period_start, data=data)
    stmt = stmt.on_conflict_do_update(
        constraint="uq_analytics_reports_period",
        set_={"data": stmt.excluded.data, "generated_at": func.now()},
    )
    await session.execute(stmt)


async def list_reports(
    session: AsyncSession, period: ReportPeriod | None, limit: int, offset: int
) -> tuple[Sequence[AnalyticsReport], int]:
    conditions = [AnalyticsReport.period == period] if period else []
    total = await session.scalar(
        select(func.count()).select_from(AnalyticsReport).where(*conditions)
    )
    stmt = (
        select(AnalyticsReport)
        .where(*conditions)
        .order_by(AnalyticsReport.period_start.desc(), AnalyticsReport.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(stmt)).all(), total or 0
