"""Live seat availability: committed changes fan out over Redis pub/sub.

Publishers (any API process or worker) give each change a per-event sequence number and
publish it in one Lua call, so numbers follow publish order. Each API process keeps one
subscriber connection (`LiveHub`) and hands messages to its local WebSocket clients.
"""

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.core.redis import REDIS_ERRORS, redis

log = structlog.get_logger(__name__)

CHANNEL_PREFIX = "evently:live:event:"
SEQ_PREFIX = "evently:live:seq:"
COUNTS_PREFIX = "evently:live:counts:"
QUEUE_SIZE = 256

# The one script that numbers and publishes a change. KEYS: the event's sequence key and
# channel, then (for seat changes) its cache version key and seat counts. ARGV: the
# message without its closing brace, the version's time to live, then the change in
# available, held, booked seats, "seed" when those are the whole counts (recounted from
# PostgreSQL), and the counts' time to live. Seat changes move the version (cached views
# go stale, see app.infra.cache) and carry the counts after the change; -1 means the
# counts are unknown here (Redis restarted or they expired): recount and call again.
_ANNOUNCE = """
local totals = ''
if #KEYS > 2 then
  if ARGV[6] == 'seed' then
    redis.call('HSET', KEYS[4], 'available', ARGV[3], 'held', ARGV[4], 'booked', ARGV[5])
    redis.call('EXPIRE', KEYS[4], ARGV[7])
  elseif redis.call('EXISTS', KEYS[4]) == 0 then
    return -1
  else
    redis.call('HINCRBY', KEYS[4], 'available', ARGV[3])
    redis.call('HINCRBY', KEYS[4], 'held', ARGV[4])
    redis.call('HINCRBY', KEYS[4], 'booked', ARGV[5])
  end
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  local c = redis.call('HMGET', KEYS[4], 'available', 'held', 'booked')
  totals = ',"available":' .. c[1] .. ',"held":' .. c[2] .. ',"booked":' .. c[3]
end
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. totals .. ',"seq":' .. seq .. '}')
return seq
"""
UNKNOWN_COUNTS = -1
# Counts are recounted from PostgreSQL at least this often: whatever drift a lost update
# (Redis restarted between two changes) could cause is bounded by it.
COUNTS_TTL_S = 60


def channel(event_id: int) -> str:
    return f"{CHANNEL_PREFIX}{event_id}"


def seq_key(event_id: int) -> str:
    return f"{SEQ_PREFIX}{event_id}"


def counts_key(event_id: int) -> str:
    return f"{COUNTS_PREFIX}{event_id}"


async def current_seq(event_id: int) -> int:
    async def read(client: Redis) -> int:
        return int(await client.get(seq_key(event_id)) or 0)

    return await redis.call(read, 0)


@dataclass(frozen=True)
class SeatCounts:
    available: int
    held: int
    booked: int


async def publish(event_id: int, message: dict[str, Any]) -> int | None:
    """Number and publish one change that is not a seat change (call after commit)."""
    return await _announce(event_id, message, [])


async def publish_seats(
    event_id: int,
    message: dict[str, Any],
    version: tuple[str, int],
    change: SeatCounts,
    seed: bool,
) -> int | None:
    """Number and publish a seat change with the event's counts after it, and move the
    event's cache version, in one round trip (call after commit).

    `change` is added to the counts kept in Redis; with `seed` it *is* the counts.
    `version` is the cache version key and its time to live. Returns the sequence
    number, UNKNOWN_COUNTS when the counts must be recounted, or None when Redis did
    not answer.
    """
    version_key, version_ttl_s = version
    mode = "seed" if seed else "add"
    args: list[str | int] = [
        version_ttl_s,
        change.available,
        change.held,
        change.booked,
        mode,
        COUNTS_TTL_S,
    ]
    return await _announce(event_id, message, [version_key, counts_key(event_id)], args)


async def _announce(
    event_id: int, message: dict[str, Any], keys: list[str], args: list[str | int] | None = None
) -> int | None:
    opened = orjson.dumps({**message, "event_id": event_id})[:-1]  # the script closes it
    all_keys = [seq_key(event_id), channel(event_id), *keys]

    async def send(client: Redis) -> int:
        return int(await client.eval(_ANNOUNCE, len(all_keys), *all_keys, opened, *(args or [0])))

    return await redis.call(send, None)


async def drop_counts(event_id: int) -> None:
    """Forget an event's seat counts (they are recounted at the next change)."""

    async def drop(client: Redis) -> object:
        return await client.delete(counts_key(event_id))

    await redis.call(drop, None)


class LiveHub:
    """One Redis subscription per process, shared by every WebSocket of that process."""

    def __init__(self) -> None:
        self._queues: dict[int, set[asyncio.Queue[bytes | None]]] = {}
        self._pubsub: PubSub | None = None
        self._client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def subscribe(self, event_id: int) -> asyncio.Queue[bytes | None]:
        """A queue of raw messages for one event; None in it means "resync needed"."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE)
        async with self._lock:
            pubsub = await self._ensure_pubsub()
            if event_id not in self._queues:
                await pubsub.subscribe(channel(event_id))
            self._queues.setdefault(event_id, set()).add(queue)
        return queue

    async def unsubscribe(self, event_id: int, queue: asyncio.Queue[bytes | None]) -> None:
        async with self._lock:
            queues = self._queues.get(event_id, set())
            queues.discard(queue)
            if not queues and event_id in self._queues:
                del self._queues[event_id]
                if self._pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await self._pubsub.unsubscribe(channel(event_id))

    async def _ensure_pubsub(self) -> PubSub:
        if self._pubsub is None:
            # A client of its own without the short socket timeout: a subscriber waits.
            self._client = Redis.from_url(redis.url, socket_connect_timeout=1.0)
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.connect()  # type: ignore[no-untyped-call]
            self._reader = asyncio.create_task(self._read_forever(), name="live-hub-reader")
        return self._pubsub

    async def _read_forever(self) -> None:
        while True:
            try:
                await self._read(self._pubsub)
                await asyncio.sleep(0.05)  # nothing subscribed right now
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: tell clients to resync, retry
                log.warning("live_hub_disconnected", error=str(exc))
                self._broadcast_resync()
                await asyncio.sleep(1.0)
                await self._resubscribe()

    async def _read(self, pubsub: PubSub | None) -> None:
        assert pubsub is not None
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            event_id = int(message["channel"].decode().rsplit(":", 1)[1])
            for queue in list(self._queues.get(event_id, ())):
                self._offer(queue, message["data"])

    @staticmethod
    def _offer(queue: asyncio.Queue[bytes | None], data: bytes | None) -> None:
        try:
            queue.put_nowait(data)
        except asyncio.QueueFull:  # a slow client: drop its backlog, make it resync
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    def _broadcast_resync(self) -> None:
        for queues in self._queues.values():
            for queue in queues:
                self._offer(queue, None)

    async def _resubscribe(self) -> None:
        if self._pubsub is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await self._pubsub.reset()
            channels = [channel(e) for e in self._queues]
            if channels:
                await self._pubsub.subscribe(*channels)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._client is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._client.aclose()
        self._reader = self._pubsub = self._client = None
        self._queues.clear()


hub = LiveHub()
