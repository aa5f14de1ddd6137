"""Live seat availability: committed changes fan out over Redis pub/sub.

Publishers (any API process or worker) give each change a per-event sequence number and
publish it in one Lua call, so numbers follow publish order. Each API process keeps one
subscriber connection (`LiveHub`) and hands messages to its local WebSocket clients.

Sequence numbers live in Redis: a Redis restarted empty numbers from 1 again. So every
message also carries the event's *epoch*, started (as the time in ms) whenever its
sequence number is missing: `(epoch, seq)` never repeats, and a client that sees another
epoch knows that what it holds may miss changes (see `app.api.routes.live`).
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.core.redis import REDIS_ERRORS, redis

log = structlog.get_logger(__name__)

CHANNEL_PREFIX = "evently:live:"
SEQ_PREFIX = "evently:live:seq:"
COUNTS_PREFIX = "evently:live:counts:"
LOG_PREFIX = "evently:live:log:"
EPOCH_PREFIX = "evently:live:epoch:"
QUEUE_SIZE = 256
RESUBSCRIBE_EVERY_S = 0.5

# The one script that numbers and publishes a change, and keeps it in a short log that
# a client joining late is replayed from. KEYS: the event's sequence key, channel, log and
# epoch key, then (for seat changes) its cache version key and seat counts. ARGV: the
# message without its closing brace, the log's length and time to live, the epoch to start
# if the sequence number is missing (Redis lost it: numbering restarts), or, negated, to
# start in any case (the caller lost an earlier change of the event), then for seat
# changes the version's time to live, the change in available, held, booked seats, what
# to do when Redis has no counts, and the id of the transaction that made the change ('':
# unknown). Modes: "add" publishes nothing and answers {0, 0} (the caller recounts),
# "seed" stores recounted counts ARGV[11..13] with a time to live ARGV[14] and the
# snapshot they were counted in (xmin, xmax, ",xip,..," in ARGV[15..17]), "bare"
# publishes without counts. Once counts are stored, a change is added to them unless the
# snapshot they came from already saw its transaction: so a change committed while a
# recount ran is counted once, whichever reaches Redis first, from any process. Seat
# changes move the version (cached views go stale, see app.infra.cache) and carry the
# counts after the change. Answers {seq, 1} once published.
_ANNOUNCE = """
local totals = ''
if #KEYS > 4 then
  local mode = ARGV[9]
  local stored = redis.call('EXISTS', KEYS[6]) == 1
  if not stored and mode == 'seed' then
    redis.call('HSET', KEYS[6], 'available', ARGV[11], 'held', ARGV[12], 'booked', ARGV[13],
      'xmin', ARGV[15], 'xmax', ARGV[16], 'xip', ARGV[17])
    redis.call('EXPIRE', KEYS[6], ARGV[14])
    stored = true
  elseif not stored and mode == 'add' then
    return {0, 0}
  end
  if stored then
    local seen = false
    local xid = tonumber(ARGV[10])
    if xid then
      local s = redis.call('HMGET', KEYS[6], 'xmin', 'xmax', 'xip')
      if s[1] then
        seen = xid < tonumber(s[1]) or
          (xid < tonumber(s[2]) and not string.find(s[3], ',' .. ARGV[10] .. ',', 1, true))
      end
    end
    if not seen then
      redis.call('HINCRBY', KEYS[6], 'available', ARGV[6])
      redis.call('HINCRBY', KEYS[6], 'held', ARGV[7])
      redis.call('HINCRBY', KEYS[6], 'booked', ARGV[8])
    end
  end
  redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], ARGV[5])
  if stored then
    local c = redis.call('HMGET', KEYS[6], 'available', 'held', 'booked')
    totals = ',"available":' .. c[1] .. ',"held":' .. c[2] .. ',"booked":' .. c[3]
  end
end
local epoch = redis.call('GET', KEYS[4])
local start, forced = ARGV[4], string.sub(ARGV[4], 1, 1) == '-'
if forced or not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = forced and string.sub(start, 2) or start
  redis.call('SET', KEYS[4], epoch)
end
local seq = redis.call('INCR', KEYS[1])
local message = ARGV[1] .. totals .. ',"seq":' .. seq .. ',"epoch":' .. epoch .. '}'
redis.call('PUBLISH', KEYS[2], message)
redis.call('RPUSH', KEYS[3], message)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {seq, 1}
"""
# Counts are recounted from PostgreSQL at least this often: whatever drift a change lost
# between two processes (while one was seeding) could cause is bounded by it.
COUNTS_TTL_S = 60
# A client that connects (or resyncs) from a cached snapshot is replayed the changes made
# since it from this log; past it (or after it expired), it gets a fresh snapshot.
LOG_LENGTH = 2000
LOG_TTL_S = 15 * 60
_MODE_ADD, _MODE_SEED, _MODE_BARE = "add", "seed", "bare"


def channel(event_id: int) -> str:
    """The event's pub/sub channel. Pub/sub ignores the database number (every client of
    the server hears every channel), so the channel names it: two deployments (or test
    runs) on one Redis in different databases must not hear each other's events."""
    return f"{CHANNEL_PREFIX}{_database(redis.url)}:event:{event_id}"


def _database(url: str) -> str:
    return urlsplit(url).path.strip("/") or "0"


def seq_key(event_id: int) -> str:
    return f"{SEQ_PREFIX}{event_id}"


def epoch_key(event_id: int) -> str:
    return f"{EPOCH_PREFIX}{event_id}"


def counts_key(event_id: int) -> str:
    return f"{COUNTS_PREFIX}{event_id}"


def log_key(event_id: int) -> str:
    return f"{LOG_PREFIX}{event_id}"


@dataclass(frozen=True)
class SeatCounts:
    available: int
    held: int
    booked: int


async def publish(event_id: int, message: dict[str, Any]) -> int | None:
    """Number and publish one change that is not a seat change (call after commit)."""
    published = await _announce(event_id, message, [], [])
    return published[0] if published else None


@dataclass(frozen=True)
class Recounted:
    """Counts read from PostgreSQL, and the snapshot (`xmin:xmax:xip,...`) they saw."""

    counts: SeatCounts
    snapshot: str

    def visibility(self) -> list[str]:
        """xmin, xmax and ",xip,...," (the transactions in progress) for the script."""
        xmin, xmax, in_progress = self.snapshot.split(":")
        return [xmin, xmax, f",{in_progress},"]


async def publish_seats(
    event_id: int,
    message: dict[str, Any],
    version: tuple[str, int],
    change: SeatCounts,
    xid: int | None = None,
    seed: Recounted | bool | None = False,
) -> bool | None:
    """Number and publish a seat change with the event's counts after it, and move the
    event's cache version, in one round trip (call after commit).

    `change`, made by transaction `xid`, is added to the counts kept in Redis unless they
    were recounted in a snapshot that saw it. When Redis has none: with `seed=False`
    nothing is published and the answer is False (recount, then call again with the
    recount as `seed`); with a recount, it is stored; with `seed=None` the change goes
    out without counts. `version` is the cache version key and its time to live.
    Returns True once published, None when Redis did not answer.
    """
    version_key, version_ttl_s = version
    keys = [version_key, counts_key(event_id)]
    args: list[int | str] = [version_ttl_s, change.available, change.held, change.booked]
    made_by = "" if xid is None else str(xid)
    if seed is False:
        args += [_MODE_ADD, made_by]
    elif isinstance(seed, Recounted):
        counted = seed.counts
        args += [_MODE_SEED, made_by, counted.available, counted.held, counted.booked]
        args += [COUNTS_TTL_S, *seed.visibility()]
    else:
        args += [_MODE_BARE, made_by]
    published = await _announce(event_id, message, keys, args)
    return None if published is None else published[0] > 0


async def _announce(
    event_id: int, message: dict[str, Any], keys: list[str], args: list[int | str]
) -> tuple[int, bool] | None:
    opened = orjson.dumps({**message, "event_id": event_id})[:-1]  # the script closes it
    all_keys = [seq_key(event_id), channel(event_id), log_key(event_id), epoch_key(event_id)]
    all_keys += keys
    start = -now_ms() if event_id in _unannounced else now_ms()
    all_args: list[bytes | int | str] = [opened, LOG_LENGTH, LOG_TTL_S, start, *args]

    async def send(client: Redis) -> tuple[int, bool]:
        seq, known = await client.eval(_ANNOUNCE, len(all_keys), *all_keys, *all_args)
        return int(seq), bool(known)

    announced = await redis.call(send, None)
    if announced is None:
        _unannounced.add(event_id)
        _retry_soon()
    elif announced[0] > 0:
        _unannounced.discard(event_id)
    return announced


# Events with a change this process could not announce (Redis slow, down, or the breaker
# open): it never got a number, so no client could see a gap. The next announcement of the
# event starts a new epoch instead, and every client resyncs from the database; should no
# change come, `_announce_lost` sends one (`{"type": "resync"}`) once Redis answers.
_unannounced: set[int] = set()
_retrying: set[asyncio.Task[None]] = set()
RETRY_LOST_EVERY_S = 0.5


def _retry_soon() -> None:
    if not _retrying:
        task = asyncio.get_running_loop().create_task(_announce_lost(), name="live-lost")
        _retrying.add(task)
        task.add_done_callback(_retrying.discard)


async def _announce_lost() -> None:
    while _unannounced:
        await asyncio.sleep(RETRY_LOST_EVERY_S)
        for event_id in list(_unannounced):
            if await _announce(event_id, {"type": "resync"}, [], []) is None:
                break  # Redis still away: try again later


@dataclass(frozen=True)
class Since:
    """What `changes_since` found: the event's epoch now, and the changes after a seq."""

    epoch: int
    changes: list[bytes]


async def changes_since(event_id: int, seq: int) -> Since | None:
    """The published changes numbered after `seq` in the current epoch, in order; None
    when the log no longer reaches back that far or Redis did not answer (the caller then
    needs a fresh snapshot). The caller checks that `seq` is of that epoch."""

    async def read(client: Redis) -> tuple[bytes | None, bytes | None, list[bytes]]:
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(seq_key(event_id))
            pipe.get(epoch_key(event_id))
            pipe.lrange(log_key(event_id), 0, -1)
            current, epoch, logged = await pipe.execute()
        return current, epoch, logged

    found = await redis.call(read, None)
    if found is None:
        return None
    current, epoch, logged = int(found[0] or 0), int(found[1] or 0), found[2]
    if current <= seq:
        return Since(epoch, [])
    newer = [m for m in logged if seq_of(m) > seq]
    if not newer or seq_of(newer[0]) != seq + 1 or seq_of(newer[-1]) != current:
        return None
    return Since(epoch, newer)


async def current_epoch(event_id: int) -> int | None:
    """The event's epoch now (0: none begun); None when Redis did not answer."""

    async def read(client: Redis) -> int | None:
        return int(await client.get(epoch_key(event_id)) or 0)

    return await redis.call(read, None)


def seq_of(message: bytes) -> int:
    return int(orjson.loads(message)["seq"])


def position_of(message: bytes) -> tuple[int, int]:
    """(epoch, seq) of a published message: the order clients apply changes in."""
    decoded = orjson.loads(message)
    return int(decoded.get("epoch", 0)), int(decoded["seq"])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
            # A client of its own without the short socket timeout: a subscriber waits. No
            # silent reconnects either: the hub must see every lost connection (what was
            # published meanwhile never reaches it, see `_read_forever`).
            self._client = Redis.from_url(
                redis.url, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
            )
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
                await self._resubscribe()
                # What was published while no subscription was open never reached this
                # process (and a Redis back empty numbers in a new epoch): a fresh
                # snapshot for every client, now that changes reach it again.
                self._broadcast_resync()

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
        """Open the subscriptions again, retrying until Redis answers."""
        while self._pubsub is not None:
            await asyncio.sleep(RESUBSCRIBE_EVERY_S)
            async with self._lock:
                try:
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                    channels = [channel(e) for e in self._queues]
                    if channels:
                        await self._pubsub.subscribe(*channels)
                    log.info("live_hub_resubscribed", channels=len(channels))
                    return
                except REDIS_ERRORS:
                    continue

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
