"""Live seat availability: committed changes fan out over Redis pub/sub.

Publishers (any API process or worker) give each change a per-event sequence number and
publish it in one Lua call, so numbers follow publish order. Each API process keeps one
subscriber connection (`LiveHub`) and hands messages to its local WebSocket clients.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.core.redis import REDIS_ERRORS, redis

log = structlog.get_logger(__name__)

CHANNEL_PREFIX = "evently:live:event:"
SEQ_PREFIX = "evently:live:seq:"
QUEUE_SIZE = 256

# The one script that numbers and publishes a change. KEYS: the event's sequence key and
# channel, then optionally a cache version key and the cached values it guards (dropped,
# and the version moved, in the same round trip). ARGV: the message with "seq":0, the
# version's time to live.
_ANNOUNCE = """
if #KEYS > 2 then
  if #KEYS > 3 then redis.call('DEL', unpack(KEYS, 4)) end
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
local seq = redis.call('INCR', KEYS[1])
local message = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
redis.call('PUBLISH', KEYS[2], message)
return seq
"""


def channel(event_id: int) -> str:
    return f"{CHANNEL_PREFIX}{event_id}"


def seq_key(event_id: int) -> str:
    return f"{SEQ_PREFIX}{event_id}"


async def current_seq(event_id: int) -> int:
    async def read(client: Redis) -> int:
        return int(await client.get(seq_key(event_id)) or 0)

    return await redis.call(read, 0)


async def publish(
    event_id: int,
    message: dict[str, Any],
    *,
    version_key: str | None = None,
    drop: Sequence[str] = (),
    version_ttl_s: int = 0,
) -> int | None:
    """Number and publish one change (call after commit); `seq` is filled in by Redis.

    With `version_key`, also drop the cached values `drop` and move that version, in the
    same round trip. Returns the sequence number, or None when Redis did not answer.
    """
    encoded = orjson.dumps({**message, "event_id": event_id, "seq": 0})
    keys = [seq_key(event_id), channel(event_id)]
    if version_key is not None:
        keys += [version_key, *drop]

    async def send(client: Redis) -> int:
        return int(await client.eval(_ANNOUNCE, len(keys), *keys, encoded, version_ttl_s))

    return await redis.call(send, None)


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
