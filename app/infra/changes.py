"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from app.core.db import UnitOfWork
from app.core.redis import redis
from app.infra import cache, realtime
from app.infra.realtime import Recounted, SeatCounts

log = structlog.get_logger(__name__)

Recount = Callable[[], Coroutine[Any, Any, Recounted]]


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
    bounded) `recount()` reads them from PostgreSQL, once per event and process at a
    time, and the change goes out with them; should that fail or take longer than
    RECOUNT_WAIT_S, it goes out without counts: a change is never left unpublished.
    """
    message = {"type": "seats", "seat_ids": sorted(seat_ids), "status": status}
    version = (cache.event_version_key(event_id), cache.VERSION_TTL_S)

    uow.want_xid()

    async def after() -> None:
        xid = uow.xid
        published = await realtime.publish_seats(event_id, message, version, change, xid)
        if published is False:
            counted = await _recounted(event_id, recount)
            published = await realtime.publish_seats(
                event_id, message, version, change, xid, counted
            )
        if published is None:
            redis.dirty = True  # the invalidation was lost: flush when Redis is back

    uow.after_commit(after)


RECOUNT_WAIT_S = 1.0
_recounts: dict[int, asyncio.Task[Recounted]] = {}


async def _recounted(event_id: int, recount: Recount) -> Recounted | None:
    """The event's counts from PostgreSQL, one recount per event in this process at a
    time (changes arriving meanwhile wait for it); None if it failed or is too slow.
    Whether a change is in them is told by the snapshot they carry, not by timing."""
    task = _recounts.get(event_id)
    if task is None:
        task = asyncio.create_task(recount(), name=f"recount-{event_id}")
        _recounts[event_id] = task
        task.add_done_callback(lambda _: _recounts.pop(event_id, None))
    try:
        return await asyncio.wait_for(asyncio.shield(task), RECOUNT_WAIT_S)
    except Exception as exc:  # published without counts; the next change recounts
        log.warning("seat_counts_not_recounted", event_id=event_id, error=repr(exc)[:200])
        return None


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views, its seat counts and
    the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        await realtime.drop_counts(event_id)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
