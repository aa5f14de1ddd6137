"""Cache-aside for public reads, stored as the encoded JSON bytes that are sent.

A hit is one Redis GET and no pydantic work. A miss reads PostgreSQL, then stores the
bytes only if no invalidation happened meanwhile (a version key per event, compared in a
Lua script), so a slow reader cannot put back what a writer just invalidated.
Invalidations run after commit (see `UnitOfWork.after_commit`).
"""

import enum
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from app.core.config import get_settings
from app.core.redis import redis

log = structlog.get_logger(__name__)

PREFIX = "evently:c:"
LIST_TTL_S = 30 * 60
DETAIL_TTL_S = 60 * 60
SEATS_TTL_S = 5 * 60
VERSION_TTL_S = DETAIL_TTL_S * 2  # outlives every value it guards
ETAG_BYTES = 18  # '"' + 16 hex digits + '"'

# KEYS[1] value key, KEYS[2] version key; ARGV[1] version seen before the read, ARGV[2]
# the value, ARGV[3] ttl. Store only when the version did not move during the read.
_FILL_IF_UNCHANGED = """
local now = redis.call('GET', KEYS[2]) or ''
if now == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Payload:
    etag: str
    body: bytes
    hit: bool = False


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'


class EventView(enum.StrEnum):
    """The cached public views of one event, by the last part of their path."""

    DETAIL = ""  # /events/{id}
    SEATS = "seats"  # /events/{id}/seats
    STATUS = "status"  # /events/{id}/status


def event_key(event_id: int, view: EventView) -> str:
    return f"{PREFIX}event:{event_id}:{view.name.lower()}"


def event_keys(event_id: int) -> list[str]:
    """Every cached view of an event (what a change to its seats or details drops)."""
    return [event_key(event_id, view) for view in EventView]


def event_version_key(event_id: int) -> str:
    return f"{PREFIX}event:{event_id}:v"


LIST_KEY_PREFIX = f"{PREFIX}list:"
LIST_VERSION_KEY = f"{PREFIX}list:v"


def list_key(fingerprint: str) -> str:
    return LIST_KEY_PREFIX + hashlib.blake2b(fingerprint.encode(), digest_size=12).hexdigest()


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


async def lookup(key: str) -> Payload | None:
    """The stored response for `key`, if any: one Redis GET, no decoding."""

    async def read(client: Redis) -> bytes | None:
        return _as_bytes(await client.get(key))

    value = await redis.call(read, None)
    if value is None:
        return None
    return Payload(value[:ETAG_BYTES].decode(), value[ETAG_BYTES:], hit=True)


async def cached(
    key: str, version_key: str, ttl: int, produce: Callable[[], Awaitable[bytes]]
) -> Payload:
    """The stored bytes for `key`, or `produce()`'s, stored for next time."""
    if not get_settings().cache_enabled:
        body = await produce()
        return Payload(etag_of(body), body)
    hit = await lookup(key)
    if hit is not None:
        return hit

    async def read_version(client: Redis) -> bytes | None:
        return _as_bytes(await client.get(version_key))

    # Read the version *before* the database: a write committing meanwhile moves it.
    version = await redis.call(read_version, None)
    body = await produce()
    payload = Payload(etag_of(body), body)
    if not redis.is_down:
        await _fill(key, version_key, version or b"", payload.etag.encode() + body, ttl)
    return payload


async def _fill(key: str, version_key: str, seen: bytes, value: bytes, ttl: int) -> None:
    async def store(client: Redis) -> object:
        return await client.eval(_FILL_IF_UNCHANGED, 2, key, version_key, seen, value, ttl)

    await redis.call(store, None)


async def invalidate(keys: list[str], version_key: str) -> None:
    """Drop cached values and move the version so reads in flight do not store old data."""

    async def drop(client: Redis) -> bool:
        async with client.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            pipe.incr(version_key)
            pipe.expire(version_key, VERSION_TTL_S)
            await pipe.execute()
        return True

    if not await redis.call(drop, False):
        redis.dirty = True  # flushed when Redis answers again, see `flush_after_outage`


async def invalidate_event(event_id: int, *, listing: bool = False) -> None:
    """After an event's seats or details changed (and, with `listing`, the event lists)."""
    await invalidate(event_keys(event_id), event_version_key(event_id))
    if listing:
        await invalidate_lists()


async def invalidate_lists() -> None:
    async def drop(client: Redis) -> bool:
        keys = [k async for k in client.scan_iter(match=LIST_KEY_PREFIX + "*", count=500)]
        async with client.pipeline(transaction=True) as pipe:
            if keys:
                pipe.unlink(*keys)
            pipe.incr(LIST_VERSION_KEY)
            pipe.expire(LIST_VERSION_KEY, LIST_TTL_S * 2)
            await pipe.execute()
        return True

    if not await redis.call(drop, False):
        redis.dirty = True


async def flush_after_outage() -> None:
    """An invalidation was lost while Redis was away: drop every cached value once."""
    if not redis.dirty:
        return

    async def flush(client: Redis) -> int:
        keys = [k async for k in client.scan_iter(match=PREFIX + "*", count=1000)]
        return int(await client.unlink(*keys)) if keys else 0

    dropped = await redis.call(flush, -1)
    if dropped >= 0:
        redis.dirty = False
        log.info("cache_flushed_after_outage", keys=dropped)
