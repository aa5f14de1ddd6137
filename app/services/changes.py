"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

from collections.abc import Sequence

import orjson
from redis.asyncio import Redis

from app.core.db import UnitOfWork
from app.core.redis import redis
from app.crud import events as events_crud
from app.services import cache, realtime

# One round trip after a seat change: drop the event's cached views, move its cache
# version, number the change and publish it. KEYS: detail, seats, status, version, seq,
# channel; ARGV: the message with "seq":0, the version's time to live.
_SEATS_CHANGED = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[2])
local seq = redis.call('INCR', KEYS[5])
local message = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
redis.call('PUBLISH', KEYS[6], message)
return seq
"""


def seats_changed(
    uow: UnitOfWork, event_id: int, seat_ids: Sequence[int], status: str, totals: dict[str, int]
) -> None:
    """Seats of an event moved to `status`: drop its cached views, tell live clients.

    `totals` are the event's counts as this transaction leaves them.
    """
    message = {"type": "seats", "event_id": event_id, "seat_ids": sorted(seat_ids)}
    encoded = orjson.dumps({**message, "status": status, **totals, "seq": 0})
    keys = [
        *cache.event_keys(event_id),
        cache.event_version_key(event_id),
        realtime.seq_key(event_id),
        realtime.channel(event_id),
    ]

    async def announce(client: Redis) -> object:
        return await client.eval(_SEATS_CHANGED, len(keys), *keys, encoded, cache.VERSION_TTL_S)

    async def after() -> None:
        if await redis.call(announce, None) is None:
            redis.dirty = True  # the invalidation was lost: flush when Redis is back

    uow.after_commit(after)


async def seats_changed_counted(
    uow: UnitOfWork, event_id: int, seat_ids: Sequence[int], status: str
) -> None:
    """`seats_changed`, counting the event's seats in the transaction first."""
    counts = await events_crud.counts(uow.session, event_id)
    totals = {"available": counts.available, "held": counts.held, "booked": counts.booked}
    seats_changed(uow, event_id, seat_ids, status, totals)


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views and the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
