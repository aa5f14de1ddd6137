"""Celery tasks: thin wrappers that run a use case on the process's event loop.

Each task is one task scope: it opens a transaction, runs the use case, and commits once
(`transaction()`), as a request does in `app.api`.
"""

import structlog
from celery import Task

from app.core.db import transaction
from app.core.queue import RUN_JOB, celery_app
from app.infra import outbox
from app.models import ReportPeriod
from app.services import analytics, expiry, webhook_delivery
from app.worker.runtime import run

log = structlog.get_logger("evently.worker")

RETRY = {
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


async def _run_job(job_id: int) -> str:
    async with transaction() as uow:
        return await outbox.run(uow, job_id)


@celery_app.task(name=RUN_JOB, bind=True, **RETRY)
def run_job(self: Task, job_id: int) -> str:
    """An outbox job (notification and the like), exactly once whatever the deliveries."""
    structlog.contextvars.bind_contextvars(task_id=self.request.id, job_id=job_id)
    outcome = run(_run_job(job_id))
    log.info("job_finished", outcome=outcome, retries=self.request.retries)
    return outcome


async def expire_all_due() -> int:
    """Batches of lapsed holds, one transaction each, until none is left."""
    total = 0
    while True:
        async with transaction() as uow:
            done = await expiry.expire_due(uow)
        total += done
        if done < expiry.BATCH:
            return total


@celery_app.task(name="evently.expire_holds", **RETRY)
def expire_holds() -> int:
    """Beat, every 30 s: lapsed holds expire, seats go to the waitlist or the public."""
    return run(expire_all_due())


@celery_app.task(name="evently.relay_outbox", **RETRY)
def relay_outbox() -> int:
    """Beat, every few seconds: send jobs the API could not hand to the broker."""
    return run(outbox.relay_pending())


@celery_app.task(name="evently.webhook_sweep")
def webhook_sweep() -> int:
    """Beat, every WEBHOOK_SWEEP_S: webhook deliveries due for a retry are sent (a failed
    sweep is not retried: the next one comes soon)."""
    return run(webhook_delivery.sweep())


async def _store_report(period: ReportPeriod) -> str:
    async with transaction() as uow:
        return (await analytics.store_report(uow, period)).isoformat()


@celery_app.task(name="evently.analytics_report", **RETRY)
def analytics_report(period: str) -> str:
    """Beat, daily and weekly: store the report of the last complete period."""
    return run(_store_report(ReportPeriod(period)))
