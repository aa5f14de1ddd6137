"""The Celery worker and beat entry point: `celery -A app.worker.celery_app worker|beat`."""

import structlog
from celery.schedules import crontab
from celery.signals import task_prerun, worker_process_init

from app.core.config import get_settings
from app.core.logging import configure_logging
from app.core.queue import celery_app
from app.wiring import wire
from app.worker import metrics, tasks

app = celery_app
TASKS = tasks  # the module that defines the tasks, imported so Celery knows them
METRICS = metrics  # its signal handlers count task outcomes for Prometheus

celery_app.conf.beat_schedule = {
    "expire-holds": {"task": "evently.expire_holds", "schedule": 30.0},
    "relay-outbox": {"task": "evently.relay_outbox", "schedule": 5.0},
    "webhook-sweep": {"task": "evently.webhook_sweep", "schedule": get_settings().webhook_sweep_s},
    "daily-report": {
        "task": "evently.analytics_report",
        "schedule": crontab(minute=5, hour=0),
        "args": ["daily"],
    },
    "weekly-report": {
        "task": "evently.analytics_report",
        "schedule": crontab(minute=15, hour=0, day_of_week="mon"),
        "args": ["weekly"],
    },
}

configure_logging(get_settings())
wire()


@worker_process_init.connect
def _fresh_process(**_: object) -> None:
    # A forked child must not reuse the parent's sockets: start with no engine, no client.
    from app.core.db import db
    from app.core.redis import redis

    db.forget()
    redis.forget()


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: object = None, **_: object) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))
