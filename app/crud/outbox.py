"""The transactional outbox. Never commits."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OutboxJob


async def add(session: AsyncSession, task: str, payload: dict[str, Any]) -> int:
    job = OutboxJob(task=task, payload=payload, attempts=0)
    session.add(job)
    await session.flush()
    return job.id


async def lock(session: AsyncSession, job_id: int) -> OutboxJob | None:
    """The job, locked: a duplicate delivery running at the same time waits here."""
    return await session.scalar(select(OutboxJob).where(OutboxJob.id == job_id).with_for_update())


async def mark_sent(session: AsyncSession, job_ids: Sequence[int]) -> None:
    await session.execute(
        update(OutboxJob)
        .where(OutboxJob.id.in_(list(job_ids)))
        .values(sent_at=func.now(), attempts=OutboxJob.attempts + 1)
    )


async def claim_pending(
    session: AsyncSession, unsent_after: timedelta, stuck_after: timedelta, limit: int
) -> list[int]:
    """Jobs to (re-)send: never handed to the broker, or handed long ago and not done."""
    now = func.now()
    stmt = (
        select(OutboxJob.id)
        .where(
            OutboxJob.done_at.is_(None),
            or_(
                (OutboxJob.sent_at.is_(None)) & (OutboxJob.created_at < now - unsent_after),
                OutboxJob.sent_at < now - stuck_after,
            ),
        )
        .order_by(OutboxJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(await session.scalars(stmt))


def finish(job: OutboxJob, when: datetime) -> None:
    job.done_at = when
