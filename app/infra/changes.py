"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

from collections.abc import Awaitable, Callable, Sequence

from app.core.db import UnitOfWork
from app.core.redis import redis
from app.infra import cache, realtime
from app.infra.realtime import UNKNOWN_COUNTS, SeatCounts

Recount = Callable[[], Awaitable[SeatCounts]]


def seats_changed(
    uow: UnitOfWork,
    event_id: int,
    seat_ids: Sequence[int],
    status: str,
    change: SeatCounts,
    recount: Recount,
) -> None:
    """Seats of an event moved to `status`: its cached views go stale and live clients
    hear of it with the event's counts, in one Redis round trip after commit.

    `change` is what this transaction did to the counts (seats per stored status). The
    counts live in Redis; when Redis has none (restarted, or expired so that drift stays
    bounded) `recount()` reads them from PostgreSQL, after the commit.
    """
    message = {"type": "seats", "seat_ids": sorted(seat_ids), "status": status}
    version = (cache.event_version_key(event_id), cache.VERSION_TTL_S)

    async def after() -> None:
        seq = await realtime.publish_seats(event_id, message, version, change, seed=False)
        if seq == UNKNOWN_COUNTS:
            counts = await recount()
            seq = await realtime.publish_seats(event_id, message, version, counts, seed=True)
        if seq is None:
            redis.dirty = True  # the invalidation was lost: flush when Redis is back

    uow.after_commit(after)


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views, its seat counts and
    the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        await realtime.drop_counts(event_id)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
