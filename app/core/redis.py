"""The process's Redis client, with short timeouts so an outage never hangs a request."""

from redis.asyncio import Redis

from app.core.config import get_settings


class RedisHolder:
    def __init__(self) -> None:
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(
                get_settings().redis_url,
                socket_timeout=0.05,
                socket_connect_timeout=0.05,
                health_check_interval=0,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None


redis = RedisHolder()
