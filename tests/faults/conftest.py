"""Fixtures of the fault suite: real API processes with their output kept, a PostgreSQL
cluster of the test's own, the app pointed at another database for the test's setup."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core import memo
from app.core.config import get_settings
from app.core.db import db
from tests.faults.storm import plain_dsn
from tests.migrations import upgrade
from tests.servers import ApiProcess, PostgresCluster

Launch = Callable[..., list[ApiProcess]]
Reconfigure = Callable[..., Awaitable[None]]
# What production runs with, and what a storm needs to stay about the fault: the pool
# timeout of production (a request never waits long for a connection), and a per-user
# hold limit the storm's few buyers cannot reach (rate limits have tests of their own).
API_ENV = {"DB_POOL_TIMEOUT_S": "0.5", "RATE_LIMIT_HOLD_USER": "100000/minute"}


@pytest.fixture
def launch_apis(tmp_path: Path) -> Iterator[Launch]:
    """Launch `n` uvicorn processes at once (API_ENV plus `env`), each logging to a file;
    the test sets up meanwhile, then waits (`servers.wait_all`). All stopped after."""
    started: list[ApiProcess] = []

    def launch(n: int, **env: str) -> list[ApiProcess]:
        apis = [
            ApiProcess(env={**API_ENV, **env}, log_path=tmp_path / f"api-{len(started) + i}.log")
            for i in range(n)
        ]
        started.extend(apis)
        for api in apis:
            api.launch()
        return apis

    yield launch
    for api in started:
        api.stop()


@pytest.fixture
async def reconfigure(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconfigure]:
    """Change the settings of this process and rebuild its engines with them (factories
    and invariant checks then use them); the usual ones come back after the test."""
    settings = get_settings()

    async def apply(**changes: Any) -> None:
        for name, value in changes.items():
            monkeypatch.setattr(settings, name, value)
        await db.dispose()
        memo.forget_all()

    yield apply
    monkeypatch.undo()
    await db.dispose()
    memo.forget_all()


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own with an `evently` database at head."""
    cluster = PostgresCluster()
    await asyncio.to_thread(cluster.start)
    try:
        conn = await asyncpg.connect(plain_dsn(cluster.url("postgres")))
        try:
            await conn.execute("CREATE DATABASE evently")
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, cluster.url("evently"))
        yield cluster
    finally:
        await db.dispose()  # no pooled connection of ours outlives the cluster
        await asyncio.to_thread(cluster.remove)
