"""Test setup: a dedicated PostgreSQL database, created and migrated here, and real Redis.

DATABASE_URL / REDIS_URL name the servers (`make test` finds or starts them); the tests
use the database `evently_test` on that server and Redis database 15 (EVENTLY_TEST_DATABASE
and EVENTLY_TEST_REDIS_DB name others, so two runs on one machine do not meet).
"""

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

BASE_DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/evently"
)
TEST_DATABASE = os.environ.get("EVENTLY_TEST_DATABASE", "evently_test")
TEST_DATABASE_URL = make_url(BASE_DATABASE_URL).set(database=TEST_DATABASE)
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_REDIS_URL = (
    BASE_REDIS_URL.rsplit("/", 1)[0] + "/" + os.environ.get("EVENTLY_TEST_REDIS_DB", "15")
)

os.environ.update(
    APP_ENV="test",
    DATABASE_URL=TEST_DATABASE_URL.render_as_string(hide_password=False),
    REDIS_URL=TEST_REDIS_URL,
    SECRET_KEY="test-secret-key-that-is-long-enough-0123456789",
    LOG_JSON="true",
    LOG_LEVEL="WARNING",
    DB_POOL_SIZE="20",
    DB_MAX_OVERFLOW="20",
    # The storms of test_concurrency check correctness under contention, with thousands of
    # requests on one event loop: they wait for connections as long as they need. The
    # overload tests (test_overload.py) set the production bound of 0.5 s themselves.
    DB_POOL_TIMEOUT_S="30",
    BCRYPT_ROUNDS="4",
    # Tests read the seat map right after each change; the stale-while-rebuilt window
    # of a sale (CACHE_MAX_STALE_MS) has tests of its own in test_cache.py.
    CACHE_MAX_STALE_MS="0",
)

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402

from tests import factories  # noqa: E402
from tests.migrations import upgrade  # noqa: E402

FIGURES: list[str] = []


def _plain_dsn(url: Any, database: str) -> str:
    return url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)


async def _recreate_database() -> None:
    conn = await asyncpg.connect(_plain_dsn(TEST_DATABASE_URL, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def database() -> str:
    """A fresh test database at the head migration, for the whole run."""
    asyncio.run(_recreate_database())
    upgrade(TEST_DATABASE_URL.render_as_string(hide_password=False))
    return TEST_DATABASE_URL.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
async def clean_state(database: str) -> None:
    """Each test starts from empty tables and an empty Redis database."""
    del database
    from app.core import memo
    from app.core.db import db
    from app.core.redis import redis

    for attempt in range(3):
        try:
            async with db.engine.begin() as conn:
                await conn.exec_driver_sql(factories.TRUNCATE_ALL)
            break
        except DBAPIError:
            # A worker a module just started may be running a job the previous test queued
            # (its row lock meets the TRUNCATE): that job finds nothing once we are done.
            if attempt == 2:
                raise
            await asyncio.sleep(0.2)
    memo.forget_all()  # ids restart with every test: remembered accounts would be someone else
    try:
        await redis.client.flushdb()
    except Exception:  # a test may have stopped Redis on purpose
        pass


@pytest.fixture(scope="session")
async def app_instance() -> AsyncIterator[Any]:
    from app.core.db import db
    from app.core.redis import redis
    from app.main import app

    yield app
    await redis.close()
    await db.dispose()


@pytest.fixture
async def client(app_instance: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_instance)
    async with httpx.AsyncClient(transport=transport, base_url="http://evently.test") as c:
        yield c


@pytest.fixture
async def organizer() -> factories.Account:
    from app.models import Role

    return await factories.account(Role.ORGANIZER)


@pytest.fixture
async def customer() -> factories.Account:
    return await factories.account()


def record_figure(line: str) -> None:
    """A measured figure to show at the end of the run (storm throughput and the like)."""
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("measured figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
