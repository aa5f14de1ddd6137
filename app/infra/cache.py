"""Cache-aside for public reads, stored as the encoded JSON bytes that are sent.

A hit is one Redis round trip and no pydantic work. Each stored value is a one-line
header (ETag, the version it was built at, when its data were read, and view-specific
notes such as the live sequence number) and the body.

Two kinds of invalidation:

- **Seat changes** (holds, confirms, cancels, expiries: many per second during an
  on-sale) only move the event's version. A view built at an older version is *stale*:
  it is still served while its data are at most `CACHE_MAX_STALE_MS` old; after that
  one process (a Redis lock, `claim_refresh`) rebuilds it while every other reader keeps
  getting the stale bytes. So a write storm costs at most one rebuild per view per
  window, cluster-wide, and a change shows within CACHE_MAX_STALE_MS plus one rebuild
  (documented bound: 1 s). The live channel carries every change at once.
- **Event changes** (details, publish, cancel) and lists drop the values (`invalidate`):
  the next read rebuilds.

A rebuild stores its bytes only if no newer build was stored meanwhile (versions are
compared in a Lua script), so a slow reader never replaces newer data with older.
Invalidations run after commit (see `UnitOfWork.after_commit`).
"""

import enum
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from app.core import metrics
from app.core.config import get_settings
from app.core.redis import redis

log = structlog.get_logger(__name__)

PREFIX = "evently:c:"
LIST_TTL_S = 30 * 60
DETAIL_TTL_S = 60 * 60
SEATS_TTL_S = 5 * 60
VERSION_TTL_S = DETAIL_TTL_S * 2  # outlives every value it guards
REFRESH_LOCK_MS = 2_000  # a rebuilder that died frees its view after this
HEAD_MAX = 200  # bytes of header the store script reads to compare versions

# KEYS[1] value, KEYS[2] its refresh lock; ARGV[1] the new value's version, ARGV[2] the
# value, ARGV[3] ttl. Store unless a value built at a newer version is already there.
_STORE_IF_NEWER = """
local head = redis.call('GETRANGE', KEYS[1], 0, HEAD_END)
local stored = tonumber(string.match(head, '^%S+ (%d+) '))
redis.call('DEL', KEYS[2])
if stored and stored > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
""".replace("HEAD_END", str(HEAD_MAX - 1))

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
    version: int = 0  # the event version the body was built at
    built_ms: int = 0  # when its data were read, in ms since the epoch
    meta: str = ""  # what a view keeps beside its body (no spaces, no newline)

    def pack(self) -> bytes:
        head = f"{self.etag} {self.version} {self.built_ms} {self.meta}\n"
        return head.encode() + self.body

    @classmethod
    def unpack(cls, value: bytes) -> "Payload":
        end = value.index(b"\n")
        etag, version, built_ms, meta = value[:end].decode().split(" ")
        return cls(etag, value[end + 1 :], True, int(version), int(built_ms), meta)


class Freshness(enum.Enum):
    FRESH = "fresh"  # built at the current version, or recently enough
    REFRESH = "refresh"  # stale for longer than allowed: rebuild (one reader does)


@dataclass(frozen=True)
class Found:
    payload: Payload
    version: int  # the event's version now

    def freshness(self) -> Freshness:
        if self.payload.version >= self.version:
            return Freshness.FRESH
        if now_ms() - self.payload.built_ms <= get_settings().cache_max_stale_ms:
            return Freshness.FRESH
        return Freshness.REFRESH


def now_ms() -> int:
    return int(time.time() * 1000)


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
    """Every cached view of an event (what a change to its details drops)."""
    return [event_key(event_id, view) for view in EventView]


def event_version_key(event_id: int) -> str:
    return f"{PREFIX}event:{event_id}:v"


LIST_KEY_PREFIX = f"{PREFIX}list:"
# Reads through `cached` (event lists, analytics summaries): by (is a list, result).
_WHOLE_READS = {
    (listing, result): metrics.CACHE_REQUESTS.labels("list" if listing else "analytics", result)
    for listing in (True, False)
    for result in ("hit", "miss")
}
LIST_VERSION_KEY = f"{PREFIX}list:v"


def list_key(fingerprint: str) -> str:
    return LIST_KEY_PREFIX + hashlib.blake2b(fingerprint.encode(), digest_size=12).hexdigest()


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _as_int(value: bytes | str | None) -> int:
    return int(value) if value else 0


async def lookup(key: str) -> Payload | None:
    """The stored response for `key`, if any: one Redis GET."""

    async def read(client: Redis) -> bytes | None:
        return _as_bytes(await client.get(key))

    value = await redis.call(read, None)
    return Payload.unpack(value) if value is not None else None


async def fetch(key: str, version_key: str) -> Found | None:
    """An event view and the event's current version: one round trip (MGET)."""

    async def read(client: Redis) -> list[bytes | None]:
        return [_as_bytes(v) for v in await client.mget(key, version_key)]

    empty: list[bytes | None] = [None, None]
    value, version = await redis.call(read, empty)
    if value is None:
        return None
    return Found(Payload.unpack(value), _as_int(version))


async def versions(*keys: str) -> list[int]:
    """Current values of counters (versions, sequence numbers); 0 where missing."""

    async def read(client: Redis) -> list[int]:
        return [_as_int(v) for v in await client.mget(*keys)]

    return await redis.call(read, [0] * len(keys))


async def claim_refresh(key: str) -> bool:
    """Become the one reader that rebuilds `key` (False: another one is at it)."""

    async def claim(client: Redis) -> bool:
        return bool(await client.set(key + ":refresh", b"1", nx=True, px=REFRESH_LOCK_MS))

    return await redis.call(claim, False)


async def release_refresh(key: str) -> None:
    async def release(client: Redis) -> object:
        return await client.delete(key + ":refresh")

    await redis.call(release, None)


async def store_if_newer(key: str, payload: Payload, ttl: int) -> None:
    """Store a rebuilt view (and free its refresh lock) unless a newer build is there."""

    async def store(client: Redis) -> object:
        return await client.eval(
            _STORE_IF_NEWER, 2, key, key + ":refresh", payload.version, payload.pack(), ttl
        )

    await redis.call(store, None)


async def cached(
    key: str, version_key: str, ttl: int, produce: Callable[[], Awaitable[bytes]]
) -> Payload:
    """The stored bytes for `key`, or `produce()`'s, stored for next time unless the
    version moved during the read (lists and analytics: invalidated by dropping)."""
    if not get_settings().cache_enabled:
        body = await produce()
        return Payload(etag_of(body), body)
    hit = await lookup(key)
    if hit is not None:
        _WHOLE_READS[key.startswith(LIST_KEY_PREFIX), "hit"].inc()
        return hit
    _WHOLE_READS[key.startswith(LIST_KEY_PREFIX), "miss"].inc()

    async def read_version(client: Redis) -> bytes | None:
        return _as_bytes(await client.get(version_key))

    # Read the version *before* the database: a write committing meanwhile moves it.
    version = await redis.call(read_version, None)
    body = await produce()
    payload = Payload(etag_of(body), body, version=_as_int(version), built_ms=now_ms())
    if not redis.is_down:
        await _fill(key, version_key, version or b"", payload.pack(), ttl)
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
    """After an event's details changed (and, with `listing`, the event lists)."""
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
