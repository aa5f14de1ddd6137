"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from app.core.db import UnitOfWork
from app.core.redis import redis
from app.infra import cache, realtime
from app.infra.realtime import SeatCounts

log = structlog.get_logger(__name__)

Recount = Callable[[], Coroutine[Any, Any, SeatCounts]]


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

    async def after() -> None:
        published = await realtime.publish_seats(event_id, message, version, change)
        if published is False:
            counts = await _recounted(event_id, recount)
            published = await realtime.publish_seats(event_id, message, version, change, counts)
        if published is None:
            redis.dirty = True  # the invalidation was lost: flush when Redis is back

    uow.after_commit(after)


RECOUNT_WAIT_S = 1.0


@dataclass
class _Recount:
    """One recount of an event's seats, for the changes that committed before it started."""

    task: "asyncio.Task[SeatCounts] | None" = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


_running: dict[int, _Recount] = {}
_next: dict[int, _Recount] = {}


async def _recounted(event_id: int, recount: Recount) -> SeatCounts | None:
    """The event's counts from PostgreSQL, read after the caller's change committed (so
    they include it: the caller stores them as they are); None if the recount failed or
    took longer than RECOUNT_WAIT_S.

    Changes arriving while a recount runs cannot trust it (its snapshot may predate their
    commit): they wait for the next one, which starts when it ends and serves them all.
    So a rush of changes costs two recounts, and no change is counted twice by one.
    """
    turn = _next.get(event_id)
    if turn is None:
        turn = _next[event_id] = _Recount()
        if event_id not in _running:
            _start(event_id, recount)
    try:
        await asyncio.wait_for(turn.done.wait(), RECOUNT_WAIT_S)
        assert turn.task is not None
        return turn.task.result()
    except Exception as exc:  # published without counts; the next change recounts
        log.warning("seat_counts_not_recounted", event_id=event_id, error=repr(exc)[:200])
        return None


def _start(event_id: int, recount: Recount) -> None:
    """Run the waiting turn's recount; when it ends, the turn that gathered meanwhile."""
    turn = _running[event_id] = _next.pop(event_id)
    turn.task = asyncio.create_task(recount(), name=f"recount-{event_id}")

    def finished(_: object) -> None:
        turn.done.set()
        del _running[event_id]
        if event_id in _next:
            _start(event_id, recount)

    turn.task.add_done_callback(finished)


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views, its seat counts and
    the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        await realtime.drop_counts(event_id)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
