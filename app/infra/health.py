"""Readiness of the services Evently depends on."""

from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import db
from app.core.redis import make_client, redis


async def check_database() -> bool:
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def check_redis() -> bool:
    try:
        return bool(await redis.client.ping())
    except Exception:
        return False


async def check_broker() -> bool:
    url = get_settings().broker_url
    if url == get_settings().redis_url:
        return await check_redis()
    client = make_client(url)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def readiness() -> dict[str, str]:
    """'up' or 'down' for each dependency."""
    return {
        "database": "up" if await check_database() else "down",
        "redis": "up" if await check_redis() else "down",
        "broker": "up" if await check_broker() else "down",
    }
