"""The Celery application object: configuration shared by the API (which only sends)
and the worker (which also runs `app.worker.tasks`)."""

import asyncio

from celery import Celery

from app.core.config import get_settings

RUN_JOB = "evently.run_job"


def create_celery() -> Celery:
    settings = get_settings()
    celery = Celery("evently", broker=settings.broker_url)
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        # A job is acknowledged only once it has run; a worker killed mid-job (even with
        # SIGKILL) leaves it to be delivered again. Jobs are idempotent, so that is safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout_s},
        broker_connection_timeout=0.5,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Task events, so Flower can show every task as it runs.
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
        enable_utc=True,
    )
    return celery


celery_app = create_celery()


async def send_job(job_id: int) -> None:
    """Hand one outbox job to the broker; raises if the broker cannot take it now."""

    def publish() -> None:
        # No publish retries: a job that cannot be sent now stays in the outbox for the relay.
        celery_app.send_task(RUN_JOB, args=[job_id], retry=False)

    # kombu's publish is blocking network I/O: keep it off the event loop.
    await asyncio.to_thread(publish)
