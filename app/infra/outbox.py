"""Background jobs through a transactional outbox.

`enqueue` writes the job in the caller's transaction, so a job exists if and only if its
cause committed. Right after the commit it is handed to the broker; if the broker is
unreachable (or the process dies first) the row stays pending and `relay_pending`, run by
Celery beat every few seconds, sends it once the broker is back. A worker runs a job in
one transaction that also stamps `done_at`, under a row lock: a duplicate delivery, a
retry, or a re-send after a crash finds it done and changes nothing.

The job code lives with the use cases (`app.services.notifications`); start-up wiring
(`app.wiring`) registers it here with `register`.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.db import UnitOfWork, transaction, unit_of_work
from app.core.queue import send_job
from app.models import OutboxJob

log = structlog.get_logger(__name__)

Handler = Callable[[UnitOfWork, int, dict[str, Any]], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}
RELAY_BATCH = 200
UNSENT_GRACE = timedelta(seconds=2)  # leave the after-commit send a moment to do it


def register(handlers: Mapping[str, Handler]) -> None:
    """Make `fn(uow, job_id, payload)` the code behind jobs of each name."""
    HANDLERS.update(handlers)


async def enqueue(uow: UnitOfWork, task: str, **payload: Any) -> int:
    """Record a job in the current transaction; it is sent only if that commits."""
    job = OutboxJob(task=task, payload=payload, attempts=0)
    uow.session.add(job)
    await uow.session.flush()
    job_id = job.id

    async def send_now() -> None:
        await _send([job_id])

    uow.after_commit(send_now)
    return job_id


async def _send(job_ids: list[int]) -> int:
    """Send jobs to the broker, then record that; returns how many were sent."""
    sent: list[int] = []
    for job_id in job_ids:
        try:
            await send_job(job_id)
        except Exception as exc:  # broker down: the relay will try again
            log.warning("job_not_sent", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            break
        sent.append(job_id)
    if sent:
        await _record_sent(sent)
    return len(sent)


async def _record_sent(job_ids: list[int]) -> None:
    """Bookkeeping of its own, after the cause committed. Losing it (no connection free
    during a rush) only means the relay sends the job again later, and a job runs once
    however often it is delivered: a warning, not an error."""
    try:
        async with transaction() as uow:
            await _mark_sent(uow.session, job_ids)
    except (DBAPIError, SQLAlchemyTimeoutError) as exc:
        log.warning("job_sent_not_recorded", job_ids=job_ids, error=repr(exc)[:160])


async def _mark_sent(session: AsyncSession, job_ids: Sequence[int]) -> None:
    await session.execute(
        update(OutboxJob)
        .where(OutboxJob.id.in_(list(job_ids)))
        .values(sent_at=func.now(), attempts=OutboxJob.attempts + 1)
    )


async def _claim_pending(
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


async def relay_pending() -> int:
    """Send what was never sent, and re-send what was sent long ago but never ran."""
    stuck = timedelta(seconds=get_settings().outbox_retry_after_s)
    async with unit_of_work() as uow:  # read only: rolled back when the block ends
        ids = await _claim_pending(uow.session, UNSENT_GRACE, stuck, RELAY_BATCH)
    sent = await _send(ids) if ids else 0
    if sent:
        log.info("outbox_relayed", jobs=sent)
    return sent


async def run(uow: UnitOfWork, job_id: int) -> str:
    """Run one job in the caller's transaction, at most once; returns what happened.

    The job row is locked first, so a duplicate delivery running at the same time waits
    here and then finds it done. The caller (the task scope) commits.
    """
    job = await uow.session.scalar(
        select(OutboxJob).where(OutboxJob.id == job_id).with_for_update()
    )
    if job is None:
        return "missing"
    if job.done_at is not None:
        return "already done"
    fn = HANDLERS.get(job.task)
    if fn is None:
        raise LookupError(f"no handler registered for job {job.task!r}")
    await fn(uow, job.id, dict(job.payload))
    job.done_at = datetime.now(UTC)
    return "done"
