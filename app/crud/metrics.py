"""Bounded reads for a metrics scrape: the events on sale, and the outbox's backlog."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, EventStatus, OutboxJob


async def events_on_sale(session: AsyncSession, limit: int) -> list[int]:
    """Ids of published events that have not started, soonest first (index scan)."""
    stmt = (
        select(Event.id)
        .where(Event.status == EventStatus.PUBLISHED, Event.starts_at > func.now())
        .order_by(Event.starts_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def outbox_backlog(session: AsyncSession, cap: int) -> tuple[int, float]:
    """(jobs not done, counted up to `cap`; age in seconds of the oldest, 0 if none), from
    the partial index of pending jobs, oldest first."""
    pending = (
        select(OutboxJob.created_at)
        .where(OutboxJob.done_at.is_(None))
        .order_by(OutboxJob.created_at)
        .limit(cap)
        .subquery()
    )
    age = func.extract("epoch", func.now() - func.min(pending.c.created_at))
    count, oldest = (await session.execute(select(func.count(), age))).one()
    return int(count), float(oldest or 0.0)
