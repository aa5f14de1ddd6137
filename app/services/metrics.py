"""What a metrics scrape reads when it happens, never per request: seats per event on
sale (the live counts Redis keeps, `app.infra.realtime`), the outbox's backlog, and each
API process's own pool and Redis breaker state.

The reads are bounded (MAX_EVENTS events, the outbox counted up to OUTBOX_COUNT_CAP), go
through the small read pool that bookings cannot exhaust, and are kept SNAPSHOT_TTL_S per
process, so scraping often or from two Prometheus servers costs PostgreSQL nothing more.
"""

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import QueuePool

from app.core import metrics
from app.core.db import db, unit_of_work
from app.core.redis import redis
from app.crud import inventory
from app.crud import metrics as crud
from app.infra import waiting_room
from app.infra.realtime import SeatCounts, counts_key

log = structlog.get_logger(__name__)

SNAPSHOT_TTL_S = 5.0
MAX_EVENTS = 100  # events on sale reported, soonest first
MAX_RECOUNTS = 20  # of those, counted in PostgreSQL when Redis has no live counts
OUTBOX_COUNT_CAP = 100_000
SAMPLE_EVERY_S = 1.0
STATES = ("available", "held", "booked")


@dataclass(frozen=True)
class Snapshot:
    seats: dict[int, SeatCounts] = field(default_factory=dict)
    outbox: tuple[int, float] | None = None  # (pending jobs, oldest age in seconds)
    taken_at: float = 0.0


_last = Snapshot()


async def snapshot() -> Snapshot:
    """The scrape-time figures, read at most once every SNAPSHOT_TTL_S in this process."""
    global _last
    if time.monotonic() - _last.taken_at < SNAPSHOT_TTL_S:
        return _last
    try:
        async with unit_of_work(cache_fill=True) as uow:
            ids = await crud.events_on_sale(uow.session, MAX_EVENTS)
            outbox = await crud.outbox_backlog(uow.session, OUTBOX_COUNT_CAP)
            seats = await _seat_counts(uow.session, ids)
    except Exception as exc:  # a scrape must still answer: the process metrics, without these
        log.warning("metrics_snapshot_failed", error=repr(exc)[:200])
        return Snapshot()
    _last = Snapshot(seats, outbox, time.monotonic())
    return _last


async def _seat_counts(session: AsyncSession, event_ids: list[int]) -> dict[int, SeatCounts]:
    live = await _live_counts(event_ids)
    missing = [event_id for event_id in event_ids if event_id not in live]
    for event_id in missing[:MAX_RECOUNTS]:
        totals = await inventory.stored_counts(session, event_id)
        live[event_id] = SeatCounts(totals.available, totals.held, totals.booked)
    return live


async def _live_counts(event_ids: list[int]) -> dict[int, SeatCounts]:
    """The counts Redis keeps for events with recent seat changes: one round trip."""

    async def read(client: Redis) -> list[list[bytes | None]]:
        async with client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hmget(counts_key(event_id), *STATES)
            return list(await pipe.execute())

    empty: list[list[bytes | None]] = []
    rows = await redis.call(read, empty) if event_ids else empty
    found: dict[int, SeatCounts] = {}
    for event_id, row in zip(event_ids, rows, strict=False):
        if all(value is not None for value in row):
            available, held, booked = (int(value or 0) for value in row)
            found[event_id] = SeatCounts(available, held, booked)
    return found


class ScrapeCollector(Collector):
    """The snapshot's figures as Prometheus gauges (registered for one scrape only)."""

    def __init__(self, taken: Snapshot) -> None:
        self.taken = taken

    def collect(self) -> Iterator[Metric]:
        seats = GaugeMetricFamily(
            "evently_event_seats",
            f"Seats of each event on sale by state (the {MAX_EVENTS} soonest events).",
            labels=["event_id", "state"],
        )
        for event_id, counts in sorted(self.taken.seats.items()):
            for state in STATES:
                seats.add_metric([str(event_id), state], getattr(counts, state))
        yield seats
        if self.taken.outbox is not None:
            pending, age = self.taken.outbox
            yield GaugeMetricFamily(
                "evently_outbox_pending_jobs",
                f"Outbox jobs not done yet (counted up to {OUTBOX_COUNT_CAP}).",
                value=pending,
            )
            yield GaugeMetricFamily(
                "evently_outbox_oldest_pending_age_seconds",
                "Age of the oldest outbox job not done yet (0 when none).",
                value=age,
            )


def sample_process() -> None:
    """Write this process's pool and Redis breaker state to its gauges."""
    for name, pool in db.pools().items():
        if isinstance(pool, QueuePool):
            metrics.DB_POOL_IN_USE.labels(name).set(pool.checkedout())
            metrics.DB_POOL_SIZE.labels(name).set(pool.size())
            metrics.DB_POOL_WAITING.labels(name).set(_waiting(pool))
    metrics.REDIS_UP.labels("main").set(0 if redis.is_down else 1)
    metrics.REDIS_UP.labels("waiting_room").set(0 if waiting_room.guard.is_down else 1)


def _waiting(pool: QueuePool) -> int:
    """Callers waiting for a connection of an asyncio pool: the waiters of its queue
    (SQLAlchemy does not count them; 0 should its internals change)."""
    queue = getattr(getattr(pool, "_pool", None), "_queue", None)
    return len(getattr(queue, "_getters", ()))


async def scrape() -> bytes:
    """The text of `GET /metrics`: every process's metrics and this scrape's reads."""
    sample_process()
    taken = await snapshot()
    return await asyncio.to_thread(metrics.exposition, ScrapeCollector(taken))
