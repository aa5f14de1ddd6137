"""Sales analytics: SQL aggregates, cached briefly; daily and weekly stored reports."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from app.core.db import UnitOfWork, unit_of_work
from app.crud import analytics as crud
from app.crud.analytics import Window
from app.infra import cache
from app.infra.cache import Payload
from app.models import ReportPeriod, Role, User
from app.schemas.analytics import AnalyticsSummary, DayFigures, EventFigures, ReportRead
from app.schemas.common import Page

SUMMARY_TTL_S = 30
TOP_EVENTS = 5
DAYS = 30


async def _figures(uow: UnitOfWork, window: Window, scope: str) -> AnalyticsSummary:
    session = uow.session
    by_status = await crud.bookings_by_status(session, window)
    events = [
        EventFigures(
            event_id=e_id,
            name=name,
            capacity=capacity,
            seats_sold=sold,
            utilization=round(sold / capacity, 4) if capacity else 0.0,
            revenue_cents=int(revenue),
            waitlist=waiting,
        )
        for e_id, name, capacity, sold, revenue, waiting in await crud.per_event(session, window)
    ]
    settled = by_status["confirmed"] + by_status["cancelled"]
    since = datetime.combine(date.today() - timedelta(days=DAYS - 1), time.min, UTC)
    days = await crud.bookings_per_day(session, window, window.since or since)
    return AnalyticsSummary(
        scope=scope,
        bookings_by_status=by_status,
        revenue_cents=await crud.revenue_cents(session, window),
        cancellation_rate=round(by_status["cancelled"] / settled, 4) if settled else 0.0,
        events=events,
        top_events=sorted(events, key=lambda e: (-e.seats_sold, e.event_id))[:TOP_EVENTS],
        waitlist_total=sum(e.waitlist for e in events),
        bookings_per_day=[DayFigures.model_validate(d) for d in days],
    )


async def summary(user: User) -> Payload:
    """Figures over every event (admin) or the caller's own events (organizer)."""
    organizer = None if user.role == Role.ADMIN else user.id
    scope = "all events" if organizer is None else f"events of organizer {organizer}"

    async def produce() -> bytes:
        async with unit_of_work() as uow:
            return (
                (await _figures(uow, Window(organizer_id=organizer), scope))
                .model_dump_json()
                .encode()
            )

    key = f"{cache.PREFIX}analytics:{organizer or 'all'}"
    return await cache.cached(key, f"{cache.PREFIX}analytics:v", SUMMARY_TTL_S, produce)


def period_bounds(period: ReportPeriod, today: date) -> tuple[date, datetime, datetime]:
    """The last complete day (or Monday-to-Sunday week) before `today`."""
    if period == ReportPeriod.DAILY:
        start = today - timedelta(days=1)
        length = timedelta(days=1)
    else:
        start = today - timedelta(days=today.weekday() + 7)
        length = timedelta(days=7)
    since = datetime.combine(start, time.min, UTC)
    return start, since, since + length


async def store_report(uow: UnitOfWork, period: ReportPeriod, today: date | None = None) -> date:
    """Compute and store the report of the last complete period; returns its start."""
    start, since, until = period_bounds(period, today or datetime.now(UTC).date())
    figures = await _figures(uow, Window(since=since, until=until), "all events")
    data: dict[str, Any] = orjson.loads(figures.model_dump_json())
    data["period"] = {"from": since.isoformat(), "to": until.isoformat()}
    await crud.store_report(uow.session, period, start, data)
    return start


async def reports(
    uow: UnitOfWork, period: ReportPeriod | None, limit: int, offset: int
) -> Page[ReportRead]:
    """Stored reports, newest first."""
    rows, total = await crud.list_reports(uow.session, period, limit, offset)
    return Page(
        items=[ReportRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
