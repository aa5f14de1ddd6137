"""Prometheus metrics: what every process counts, and the text a scrape is answered with.

Multiprocess mode (prometheus-client) when `PROMETHEUS_MULTIPROC_DIR` is set: each
process (every uvicorn worker, every Celery worker) writes its values to memory-mapped
files there, and whichever process answers `GET /metrics` adds them all up. The launcher
sets the variable before any process starts and empties the directory (`scripts/run.py`,
the bench, the tests); it must be set outside Python, so that every child inherits it.
Without it (tests in-process, one process) the default registry is used.

Request metrics are counted by `app.api.metrics`; gauges that are cheap to read but
costly to keep current (seats per event, the outbox) are read when scraped
(`app.services.metrics`), never per request.
"""

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "evently_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "evently_http_request_duration_seconds",
    "Time to answer the hot routes (hold, confirm, seat map, event reads, waiting room).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "evently_cache_requests",
    "Cached reads by view and result: fresh, stale (served while another reader "
    "rebuilds), rebuild (rebuilt by this reader), miss (built from PostgreSQL).",
    ["view", "result"],
)
ERRORS = Counter(
    "evently_errors",
    "Error answers by their stable `code` (409 seats_unavailable, 503 overloaded, ...).",
    ["code"],
)
HOLDS_REFUSED = Counter(
    "evently_holds_refused",
    "Holds (POST /bookings/) refused, by the error code.",
    ["reason"],
)
LOCK_FAILURES = Counter(
    "evently_lock_failures",
    "Seat lock failures turned into a 409: lock_timeout, deadlock, serialization, or "
    "claim_index (the unique index of active claims caught what the locks did not).",
    ["kind"],
)
DB_POOL_IN_USE = Gauge(
    "evently_db_pool_in_use",
    "Database connections checked out, summed over live API processes.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "evently_db_pool_waiting",
    "Requests waiting for a pooled database connection, summed over live API processes.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "evently_db_pool_size",
    "Database connections the pools may hold, summed over live API processes.",
    ["pool"],
    multiprocess_mode="livesum",
)
REDIS_UP = Gauge(
    "evently_redis_up",
    "1 when the Redis breaker is closed in every live API process, 0 when it is open in one.",
    ["client"],
    multiprocess_mode="livemin",
)
CELERY_TASKS = Counter(
    "evently_celery_tasks",
    "Celery tasks finished by a worker, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
CELERY_TASK_DURATION = Histogram(
    "evently_celery_task_duration_seconds",
    "Time a worker spent running a task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0),
)


@functools.cache
def child(metric: Any, *labels: object) -> Any:
    """`metric.labels(*labels)`, made once (labels() costs a few µs a call)."""
    return metric.labels(*labels)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition(extra: Collector | None = None) -> bytes:
    """The text of a scrape: every process's metrics (or this one's), then `extra`'s."""
    if is_multiprocess():
        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)  # type: ignore[no-untyped-call]
    else:
        base = REGISTRY
    text = generate_latest(base)
    if extra is not None:
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(extra)
        text += generate_latest(scraped)
    return text


def process_exited() -> None:
    """Drop this process's live gauges (its pool and breaker state) from the sums."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
