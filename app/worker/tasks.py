"""Celery tasks: thin wrappers that run a service on the process's event loop."""

import structlog
from celery import Task

from app.core.queue import RUN_JOB, celery_app
from app.models import ReportPeriod
from app.services import analytics, expiry, jobs
from app.services import notifications as _notifications  # noqa: F401  (registers job handlers)
from app.worker.runtime import run

log = structlog.get_logger("evently.worker")

RETRY = {
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


@celery_app.task(name=RUN_JOB, bind=True, **RETRY)
def run_job(self: Task, job_id: int) -> str:
    """An outbox job (notification and the like), exactly once whatever the deliveries."""
    structlog.contextvars.bind_contextvars(task_id=self.request.id, job_id=job_id)
    outcome = run(jobs.run(job_id))
    log.info("job_finished", outcome=outcome, retries=self.request.retries)
    return outcome


@celery_app.task(name="evently.expire_holds", **RETRY)
def expire_holds() -> int:
    """Beat, every 30 s: lapsed holds expire, seats go to the waitlist or the public."""
    return run(expiry.expire_all_due())


@celery_app.task(name="evently.relay_outbox", **RETRY)
def relay_outbox() -> int:
    """Beat, every few seconds: send jobs the API could not hand to the broker."""
    return run(jobs.relay_pending())


@celery_app.task(name="evently.analytics_report", **RETRY)
def analytics_report(period: str) -> str:
    """Beat, daily and weekly: store the report of the last complete period."""
    return run(analytics.store_report(ReportPeriod(period))).isoformat()
