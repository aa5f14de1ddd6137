"""Celery task outcomes for Prometheus, counted by the worker process that ran them.

The worker runs with the API's PROMETHEUS_MULTIPROC_DIR (the same machine, or a volume
both mount), so `GET /metrics` on the API adds these up with the rest.
"""

import time

from celery.signals import task_postrun, task_prerun, worker_process_shutdown

from app.core import metrics

_started: dict[str, float] = {}


@task_prerun.connect
def _started_task(task_id: str | None = None, **_: object) -> None:
    if task_id is not None:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _finished_task(
    task_id: str | None = None, task: object = None, state: str | None = None, **_: object
) -> None:
    name = str(getattr(task, "name", None) or "unknown")
    metrics.CELERY_TASKS.labels(name, (state or "unknown").lower()).inc()
    started = _started.pop(task_id or "", None)
    if started is not None:
        metrics.CELERY_TASK_DURATION.labels(name).observe(time.perf_counter() - started)


@worker_process_shutdown.connect
def _process_exited(**_: object) -> None:
    metrics.process_exited()
