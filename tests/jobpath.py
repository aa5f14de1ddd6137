"""The job path with a real Celery worker process and the real broker (Redis): helpers
shared by the test modules of each use case that goes through a worker."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import kombu.pools
import pytest
from sqlalchemy import text

from app.core.db import db
from app.core.queue import celery_app
from app.models import Role
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.servers import RedisProcess, WorkerProcess

WORKER_ENV = {"OUTBOX_RETRY_AFTER_S": "2", "CELERY_VISIBILITY_TIMEOUT_S": "3", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerProcess]:
    """A worker for one test module (import this fixture into the module)."""
    process = WorkerProcess(env=WORKER_ENV)
    process.start()
    yield process
    process.stop()


async def scalar(sql: str, **params: object) -> object:
    async with db.engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def notifications(user_id: int, kind: str) -> int:
    found = await scalar(
        "SELECT count(*) FROM notifications WHERE user_id = :u AND kind = :k", u=user_id, k=kind
    )
    return int(found)  # type: ignore[call-overload]


async def jobs_done() -> bool:
    return await scalar("SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0


async def send(task: str, *args: object) -> None:
    await asyncio.to_thread(celery_app.send_task, task, args=list(args))


async def confirmed_booking(client, capacity: int = 5) -> tuple[factories.Account, int, int]:
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=capacity))
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
    )
    confirmed = await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    assert confirmed.status_code == 200
    return buyer, event_id, held.json()["id"]


async def notifications_at_least(user_id: int, kind: str, n: int) -> bool:
    return await notifications(user_id, kind) >= n


async def expire_all_holds() -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE bookings SET expires_at = now() - interval '1 s' WHERE status = 'pending'")
        )
        await conn.execute(
            text("UPDATE seats SET held_until = now() - interval '1 s' WHERE status = 'held'")
        )


@pytest.fixture
async def own_broker() -> AsyncIterator[RedisProcess]:
    """A broker of its own, for this process and a worker, that the test can stop."""
    server = RedisProcess()
    server.start()
    use_broker(server.url)
    try:
        yield server
    finally:
        server.stop()
        use_broker(TEST_REDIS_URL)


def use_broker(url: str) -> None:
    """Point this process's Celery client at another broker (closing the old connections)."""
    celery_app.pool.force_close_all()
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu.pools.reset()  # else kombu hands the closed pool of the old URL out again
