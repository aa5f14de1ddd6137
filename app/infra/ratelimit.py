"""Redis-backed rate limits (the `limits` library, moving windows).

Policy while Redis is unreachable: **fail open**. Limits protect capacity and slow down
password guessing; they are not what keeps bookings correct (PostgreSQL locks are), so
an outage lets requests through rather than locking every customer out. The outage is
logged (once per interval) by the Redis guard.
"""

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from app.core.config import get_settings
from app.core.errors import RateLimited
from app.core.redis import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, redis

KEY_PREFIX = "evently:rl"


@dataclass(frozen=True)
class Limit:
    name: str
    item: RateLimitItem


def limit(name: str, spec: str) -> Limit:
    return Limit(name, parse(spec))


@lru_cache(maxsize=4)
def _limiter(url: str) -> MovingWindowRateLimiter:
    storage = RedisStorage(
        "async+" + url,
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )
    return MovingWindowRateLimiter(storage)


def _enabled() -> bool:
    return get_settings().rate_limit_enabled


async def hit(rule: Limit, identifier: str) -> None:
    """Count one request; `RateLimited` (429) when the window is already full."""
    if not _enabled():
        return
    limiter = _limiter(redis.url)

    async def consume(_: Redis) -> bool:
        return await limiter.hit(rule.item, rule.name, identifier)

    if not await redis.call(consume, True):
        await _refuse(rule, identifier)


async def check(rule: Limit, identifier: str) -> None:
    """Refuse if the window is full, without counting this request."""
    if not _enabled():
        return
    limiter = _limiter(redis.url)

    async def peek(_: Redis) -> bool:
        return await limiter.test(rule.item, rule.name, identifier)

    if not await redis.call(peek, True):
        await _refuse(rule, identifier)


async def _refuse(rule: Limit, identifier: str) -> None:
    limiter = _limiter(redis.url)

    async def reset_at(_: Redis) -> float:
        return (await limiter.get_window_stats(rule.item, rule.name, identifier)).reset_time

    retry_after = max(1, math.ceil(await redis.call(reset_at, time.time() + 60) - time.time()))
    raise RateLimited(
        f"Too many requests ({rule.item}); try again in {retry_after} s.", retry_after=retry_after
    )


def login_per_ip() -> Limit:
    return limit("login-ip", get_settings().rate_limit_login_ip)


def login_failures() -> Limit:
    return limit("login-fail", get_settings().rate_limit_login_failures)


def register_per_ip() -> Limit:
    return limit("register-ip", get_settings().rate_limit_register_ip)


def holds_per_user() -> Limit:
    return limit("hold-user", get_settings().rate_limit_hold_user)


def queue_join_per_ip() -> Limit:
    return limit("queue-join-ip", get_settings().rate_limit_queue_join_ip)
