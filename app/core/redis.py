"""The process's Redis client, guarded so that an outage degrades instead of failing.

Every Redis call made for caching, live updates or rate limits goes through `guard`:
short socket timeouts (well under 100 ms), a breaker that skips Redis for a moment after a
failure (so requests do not each pay the timeout), one log line per interval rather than
per request, and automatic recovery.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.config import get_settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Connecting must be quick (a refused or unreachable Redis is detected in 50 ms); a reply
# may take a little longer, because on a saturated machine the event loop itself can be
# late to read an answer that has already arrived.
CONNECT_TIMEOUT_S = 0.05
# 250 ms: a saturated API process (both cores busy during a sale) was measured reading
# replies up to ~200 ms late; at 80 ms those late replies opened the breaker, the cache
# went dark and every read fell on PostgreSQL, which made the saturation worse.
SOCKET_TIMEOUT_S = 0.25
BREAKER_OPEN_S = 1.0
# A refused or reset connection opens the breaker at once; timeouts only when several
# come in a row, so one late reply on a busy machine does not switch the cache off.
TIMEOUTS_TO_OPEN = 5
LOG_EVERY_S = 30.0
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
TIMEOUT_ERRORS = (RedisTimeoutError, TimeoutError)


OUTAGE_ACTION = "serving from PostgreSQL; caching, live updates and rate limits paused"


class RedisGuard:
    def __init__(
        self,
        reply_timeout_s: float = SOCKET_TIMEOUT_S,
        action: str = OUTAGE_ACTION,
        connections: int | None = None,
    ) -> None:
        self.reply_timeout_s = reply_timeout_s
        self.connections = connections  # a bounded pool that callers wait for
        self.action = action  # what the outage log line says is done meanwhile
        self._client: Redis | None = None
        self._url: str | None = None
        self._skip_until = 0.0
        self._down_since: float | None = None
        self._last_log = 0.0
        self._timeouts = 0
        self.dirty = False  # an invalidation was lost while Redis was unreachable
        self.on_recovery: list[Callable[[], Awaitable[None]]] = []

    @property
    def url(self) -> str:
        return self._url or get_settings().redis_url

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = make_client(self.url, self.reply_timeout_s, self.connections)
        return self._client

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    async def use(self, url: str) -> None:
        """Point at another server (tests that stop their own Redis)."""
        await self.close()
        self._url = url
        self._skip_until, self._down_since, self._last_log = 0.0, None, 0.0

    async def call(self, operation: Callable[[Redis], Awaitable[T]], fallback: T) -> T:
        """Run `operation`; on any Redis failure return `fallback` and remember the outage."""
        if self._skip_until > time.monotonic():
            return fallback
        try:
            result = await operation(self.client)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return fallback
        self._timeouts = 0
        if self._down_since is not None:
            await self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TIMEOUT_ERRORS):
            self._timeouts += 1
            if self._timeouts < TIMEOUTS_TO_OPEN:
                return
        now = time.monotonic()
        self._skip_until = now + BREAKER_OPEN_S
        if self._down_since is None:
            self._down_since = now
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "redis_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                action=self.action,
            )

    async def _recovered(self) -> None:
        down_for = time.monotonic() - (self._down_since or 0.0)
        self._down_since, self._last_log = None, 0.0
        log.info("redis_recovered", down_seconds=round(down_for, 1))
        for hook in self.on_recovery:
            await hook()

    def forget(self) -> None:
        """Drop the client without closing it (a forked process must not share sockets)."""
        self._client = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None


def make_client(
    url: str, reply_timeout_s: float = SOCKET_TIMEOUT_S, connections: int | None = None
) -> Redis:
    """A client with short timeouts. With `connections`, commands beyond that many in
    flight wait (up to the reply timeout) for a connection; without, redis-py's own pool
    (100 connections) refuses them at once with MaxConnectionsError, which the guard
    counts as an outage."""
    options: dict[str, Any] = {
        "socket_timeout": reply_timeout_s,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 0,
        # No client-side retries: the guard's breaker decides when to try again.
        "retry": Retry(NoBackoff(), 0),
    }
    if connections is None:
        return Redis.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=reply_timeout_s, **options
    )
    return Redis.from_pool(pool)  # owns it: closing the client closes its connections


redis = RedisGuard()
