"""Background jobs through a transactional outbox.

`enqueue` writes the job in the caller's transaction, so a job exists if and only if its
cause committed. Right after the commit it is handed to the broker; if the broker is
unreachable (or the process dies first) the row stays pending and `relay_pending`, run by
Celery beat every few seconds, sends it once the broker is back. A worker runs a job in
one transaction that also stamps `done_at`, under a row lock: a duplicate delivery, a
retry, or a re-send after a crash finds it done and changes nothing.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from app.core.config import get_settings
from app.core.db import UnitOfWork, unit_of_work
from app.core.queue import send_job
from app.crud import outbox as crud

log = structlog.get_logger(__name__)

Handler = Callable[[UnitOfWork, int, dict[str, Any]], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}
RELAY_BATCH = 200
UNSENT_GRACE = timedelta(seconds=2)  # leave the after-commit send a moment to do it


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register `fn(uow, job_id, payload)` as the code behind jobs called `name`."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


async def enqueue(uow: UnitOfWork, task: str, **payload: Any) -> int:
    """Record a job in the current transaction; it is sent only if that commits."""
    job_id = await crud.add(uow.session, task, payload)

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
        async with unit_of_work() as uow:
            await crud.mark_sent(uow.session, sent)
            await uow.commit()
    return len(sent)


async def relay_pending() -> int:
    """Send what was never sent, and re-send what was sent long ago but never ran."""
    stuck = timedelta(seconds=get_settings().outbox_retry_after_s)
    async with unit_of_work() as uow:
        ids = await crud.claim_pending(uow.session, UNSENT_GRACE, stuck, RELAY_BATCH)
        await uow.rollback()
    sent = await _send(ids) if ids else 0
    if sent:
        log.info("outbox_relayed", jobs=sent)
    return sent


async def run(job_id: int) -> str:
    """Run one job exactly once; returns what happened (for the task log)."""
    async with unit_of_work() as uow:
        job = await crud.lock(uow.session, job_id)
        if job is None:
            return "missing"
        if job.done_at is not None:
            return "already done"
        fn = HANDLERS.get(job.task)
        if fn is None:
            raise LookupError(f"no handler registered for job {job.task!r}")
        await fn(uow, job.id, dict(job.payload))
        crud.finish(job, datetime.now(UTC))
        await uow.commit()
    return "done"
