"""The waiting room's line, held in Redis and moved by one Lua script.

Per event (keys share a hash tag, so one script may touch them all):

    cfg    hash   the queue settings: on, rate (per second), min (admission minutes),
                  opens (ms since the epoch), ver (the event's version; older never wins)
    meta   hash   the leaky bucket (last, credit in thousandths of an admission, pause),
                  the arrival key of the last joiner (lastkey), born, and the counters
                  joined, restored, admitted, used, left, expired
    line   zset   user -> place key, the people waiting, front first
    adm    zset   user -> expiry (ms), admitted and not yet booked
    gone   hash   user -> "left" | "expired" | "used:<expiry>", who is done

**Admission is advanced lazily, inside the script, from the time elapsed** since the last
call (any join, poll or leave advances it): credit grows by `rate` per second while
someone waits, each whole unit admits the person at the front, and an admission that
expires unused (or is given up) is a unit of credit again, so the next in line gets it.
Chosen over a beat task because it is exact at every instant (a poll sees the line as
it is now, not as of the last tick), needs no worker to be alive for the queue to move,
costs nothing when nobody is waiting, and reading and advancing are one atomic step.
Unused credit is capped at one second's worth while the line is empty, so a quiet queue
does not build up a burst. The time comes from the caller (tests run a fake clock
through the same arithmetic).

Place keys: the microsecond of joining for people who came after the sale opened
(strictly increasing per event), and a keyed draw below 2**48 for those who came before
(`app.core.admission.early_draw`): every early arrival is ahead of every later one, in
an order nobody can predict or improve by joining early or often.
"""

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.core.redis import RedisGuard

PREFIX = "evently:wr:"
MAX_ADMIT_PER_CALL = 1000
# The line has a Redis client and breaker of its own: a reply may take up to a second.
# The shared guard (250 ms) is tuned to fall back to PostgreSQL early; the waiting room
# has no fallback (it fails closed), and during a join wave a saturated API process reads
# replies late: at 250 ms those late replies opened the breaker, every join and poll of
# that process was refused for a second, and the retries fed the overload (measured:
# 24,000 503s for 10,000 joins in 5 s). A Redis that is really down is still seen at once
# (a refused connection opens the breaker immediately).
# Its pool is bounded and waited for: with hundreds of joins in flight per process,
# redis-py's default pool refused the 101st command at once (MaxConnectionsError), which
# opened the breaker just the same. 32 connections carry thousands of scripts a second.
REPLY_TIMEOUT_S = 1.0
CONNECTIONS = 32
guard = RedisGuard(
    REPLY_TIMEOUT_S,
    action="the waiting room fails closed: joins and polls get 503",
    connections=CONNECTIONS,
)

_SCRIPT = """
local cfg, meta, line, adm, gone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, now, user = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local function words(text)
  local out = {}
  for w in string.gmatch(text, '%S+') do out[#out + 1] = w end
  return out
end
local tuning = words(ARGV[8])
local rebuild_ms, ttl, max_admit = tonumber(tuning[1]), tonumber(tuning[2]), tonumber(tuning[3])

local function store_config()
  if ARGV[4] == '' then return end
  local given = words(ARGV[4])  -- version, on, rate, minutes, opens
  local ver = tonumber(redis.call('HGET', cfg, 'ver') or '-1')
  if tonumber(given[1]) >= ver then
    redis.call('HSET', cfg, 'ver', given[1], 'on', given[2], 'rate', given[3], 'min', given[4],
      'opens', given[5])
  end
end

local function load_config()
  local c = redis.call('HMGET', cfg, 'on', 'rate', 'min', 'opens')
  if not c[1] then return nil end
  return {on = c[1] == '1', rate = tonumber(c[2]), minutes = tonumber(c[3]),
    opens = tonumber(c[4])}
end

-- Expire admissions (unused ones give their slot back), accrue credit for the time
-- since the last call, and admit from the front of the line.
local function advance(c)
  local m = redis.call('HMGET', meta, 'last', 'credit', 'pause')
  local last, credit, pause = tonumber(m[1]), tonumber(m[2]) or 0, tonumber(m[3]) or 0
  if not last then
    redis.call('HSET', meta, 'born', now)
    last = now
  end
  local expired = redis.call('ZRANGEBYSCORE', adm, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', adm, '-inf', now)
    for _, u in ipairs(expired) do redis.call('HSET', gone, u, 'expired') end
    credit = credit + 1000 * #expired
    redis.call('HINCRBY', meta, 'expired', #expired)
  end
  local start = math.max(last, c.opens, pause)
  if c.on and now > start then credit = credit + (now - start) * c.rate end
  local waiting = redis.call('ZCARD', line)
  local admitted = 0
  if c.on and now >= c.opens and now >= pause then
    admitted = math.min(math.floor(credit / 1000), waiting, max_admit)
    if admitted > 0 then
      local front = redis.call('ZPOPMIN', line, admitted)
      local expires = now + c.minutes * 60000
      for i = 1, #front, 2 do redis.call('ZADD', adm, expires, front[i]) end
      credit = credit - 1000 * admitted
      redis.call('HINCRBY', meta, 'admitted', admitted)
    end
  end
  if waiting == admitted then credit = math.min(credit, math.max(1000, c.rate * 1000)) end
  redis.call('HSET', meta, 'last', math.max(last, now), 'credit', credit)
end

-- {state, rank, place key, admission expiry, waiting, rate, opens, pause, on}
local function report(c, u)
  local waiting = redis.call('ZCARD', line)
  local pause = tonumber(redis.call('HGET', meta, 'pause') or '0')
  local function reply(state, rank, key, exp)
    return {state, rank, key, exp, waiting, c.rate, c.opens, pause, c.on and 1 or 0}
  end
  local rank = redis.call('ZRANK', line, u)
  if rank then return reply(1, rank, tonumber(redis.call('ZSCORE', line, u)), 0) end
  local exp = redis.call('ZSCORE', adm, u)
  if exp then return reply(2, -1, 0, tonumber(exp)) end
  local g = redis.call('HGET', gone, u)
  if not g then return reply(0, -1, 0, 0) end
  if string.sub(g, 1, 5) == 'used:' then return reply(3, -1, 0, tonumber(string.sub(g, 6))) end
  if g == 'left' then return reply(4, -1, 0, 0) end
  return reply(5, -1, 0, 0)
end

local function keep(keys)
  for _, k in ipairs(keys) do redis.call('EXPIRE', k, ttl) end
end

local function enter(c, key, restored)
  redis.call('ZADD', line, key, user)
  redis.call('HDEL', gone, user)
  redis.call('HINCRBY', meta, restored and 'restored' or 'joined', 1)
  if key >= 281474976710656 then
    local lastkey = tonumber(redis.call('HGET', meta, 'lastkey') or '0')
    if key > lastkey then redis.call('HSET', meta, 'lastkey', key) end
  end
  advance(c)
end

-- Someone Redis does not know presents a signed pass: the line was lost (a restart
-- without persistence). Admissions pause until `rebuild_ms` after the state was reborn,
-- so people who come back in any order are admitted in their original order.
local function restore(c, admitted_until, key)
  local born = tonumber(redis.call('HGET', meta, 'born') or now)
  local pause = tonumber(redis.call('HGET', meta, 'pause') or '0')
  if now < born + rebuild_ms and pause < born + rebuild_ms then
    redis.call('HSET', meta, 'pause', born + rebuild_ms)
  end
  if admitted_until then
    redis.call('ZADD', adm, admitted_until, user)
    redis.call('HINCRBY', meta, 'restored', 1)
  else
    enter(c, key, true)
  end
end

if op == 'configure' then
  local old = load_config()
  if old then advance(old) end
  store_config()
  keep({cfg, meta, line, adm, gone})
  return {0}
end
store_config()
local c = load_config()
if not c then return {-1} end
if op == 'used' then
  local exp = redis.call('ZSCORE', adm, user)
  if exp then
    redis.call('ZREM', adm, user)
    redis.call('HSET', gone, user, 'used:' .. string.format('%d', tonumber(exp)))
    redis.call('HINCRBY', meta, 'used', 1)
  end
  return {0}
end
if op == 'leave' then
  if redis.call('ZREM', line, user) == 1 then
    redis.call('HSET', gone, user, 'left')
    redis.call('HINCRBY', meta, 'left', 1)
  elseif redis.call('ZREM', adm, user) == 1 then
    redis.call('HSET', gone, user, 'left')
    redis.call('HINCRBY', meta, 'left', 1)
    redis.call('HINCRBY', meta, 'credit', 1000)
  end
  advance(c)
  return report(c, user)
end
advance(c)
if op == 'stats' then
  local s = redis.call('HMGET', meta, 'joined', 'restored', 'admitted', 'used', 'left',
    'expired', 'born', 'pause')
  local out = {redis.call('ZCARD', line), redis.call('ZCARD', adm)}
  for i = 1, #s do out[#out + 1] = tonumber(s[i] or '0') end
  return out
end
local found = report(c, user)
local admitted_until, key = tonumber(ARGV[7]), tonumber(ARGV[6])
if found[1] == 0 and admitted_until and admitted_until > now then
  restore(c, admitted_until, nil)
elseif found[1] == 0 and key then
  restore(c, nil, key)
elseif op == 'join' and (found[1] == 0 or found[1] >= 4) then
  key = tonumber(ARGV[5])
  if now >= c.opens then
    local lastkey = tonumber(redis.call('HGET', meta, 'lastkey') or '0')
    key = math.max(now * 1000, lastkey + 1)
  end
  enter(c, key, false)
  keep({cfg, meta, line, adm, gone})
else
  return found
end
return report(c, user)
"""
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # Redis names scripts by SHA-1


class State(IntEnum):
    NOT_IN_QUEUE = 0
    WAITING = 1
    ADMITTED = 2
    USED = 3  # admitted, and booked with it
    LEFT = 4
    EXPIRED = 5  # admitted, and never booked before the admission ran out


NEED_CONFIG = -1


@dataclass(frozen=True)
class Config:
    """The event's queue settings as the script keeps them (`version`: newer wins)."""

    enabled: bool
    rate: int
    minutes: int
    opens_ms: int
    version: int


@dataclass(frozen=True)
class Place:
    """Where one user stands, as of the call that returned it."""

    state: State
    rank: int | None  # people ahead, when waiting
    key: int | None  # the place key, when waiting
    expires_ms: int | None  # the admission's end, when admitted
    waiting: int  # the line's length
    rate: int
    opens_ms: int
    pause_ms: int  # admissions paused until then (the line is being rebuilt)
    enabled: bool  # the queue is on (off: holds need no admission)


@dataclass(frozen=True)
class Stats:
    waiting: int
    admitted_now: int
    joined: int
    restored: int
    admitted: int
    used: int
    left: int
    expired: int
    born_ms: int
    pause_ms: int


def _keys(event_id: int) -> list[str]:
    base = f"{PREFIX}{{{event_id}}}:"
    return [base + name for name in ("cfg", "meta", "line", "adm", "gone")]


@dataclass(frozen=True)
class Call:
    """One run of the script: what the caller knows besides the operation."""

    op: str
    now_ms: int
    user_id: int | None = None
    config: Config | None = None
    draw: int = 0  # the place key if this user joins before the sale opens
    restore_key: int | None = None  # from a genuine queue token
    admission_expires_ms: int | None = None  # from a genuine admission token
    rebuild_ms: int = 10_000
    ttl_s: int = 86_400

    def args(self) -> list[str | int]:
        """Eight arguments (each one costs the client an encoding: polls are hot)."""
        config = self.config
        given = (
            f"{config.version} {int(config.enabled)} {config.rate} {config.minutes} "
            f"{config.opens_ms}"
            if config is not None
            else ""
        )
        return [
            self.op,
            self.now_ms,
            "" if self.user_id is None else self.user_id,
            given,
            self.draw,
            "" if self.restore_key is None else self.restore_key,
            "" if self.admission_expires_ms is None else self.admission_expires_ms,
            f"{self.rebuild_ms} {max(60, self.ttl_s)} {MAX_ADMIT_PER_CALL}",
        ]


async def _run(event_id: int, call: Call) -> list[int] | None:
    """The script's reply, or None when Redis did not answer (the caller fails closed)."""
    keys, args = _keys(event_id), call.args()

    async def send(client: Redis) -> list[int]:
        try:
            reply = await client.evalsha(_SHA, len(keys), *keys, *args)
        except NoScriptError:
            reply = await client.eval(_SCRIPT, len(keys), *keys, *args)
        return [int(v) for v in reply]

    return await guard.call(send, None)


def _place(reply: list[int]) -> Place:
    state, rank, key, expires, waiting, rate, opens, pause, enabled = reply
    return Place(
        state=State(state),
        rank=rank if rank >= 0 else None,
        key=key if state == State.WAITING else None,
        expires_ms=expires or None,
        waiting=waiting,
        rate=rate,
        opens_ms=opens,
        pause_ms=pause,
        enabled=bool(enabled),
    )


async def place(event_id: int, call: Call) -> Place | int | None:
    """Run a join, status or leave: the user's place, NEED_CONFIG when Redis has no
    settings for the event (call again with `config`), or None when Redis is away."""
    reply = await _run(event_id, call)
    if reply is None:
        return None
    if reply[0] == NEED_CONFIG:
        return NEED_CONFIG
    return _place(reply)


async def configure(event_id: int, config: Config, now_ms: int, ttl_s: int) -> bool:
    """Settle the line at the old settings up to now, then switch to `config`."""
    reply = await _run(event_id, Call("configure", now_ms, config=config, ttl_s=ttl_s))
    return reply is not None


async def used(event_id: int, user_id: int, now_ms: int) -> None:
    """The user booked with their admission: it will not come back to the line."""
    await _run(event_id, Call("used", now_ms, user_id))


async def stats(event_id: int, now_ms: int, config: Config | None = None) -> Stats | int | None:
    reply = await _run(event_id, Call("stats", now_ms, config=config))
    if reply is None:
        return None
    if reply[0] == NEED_CONFIG and len(reply) == 1:
        return NEED_CONFIG
    return Stats(*reply)
