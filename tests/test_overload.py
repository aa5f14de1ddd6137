"""Overload is answered, not timed out (DESIGN §9): a pool with no free connection and
PostgreSQL backends killed under the app both give 503 with Retry-After, never a 500, and
the seats stay consistent. Real PostgreSQL, requests through the whole ASGI app at once.
The storm with backends killed every 0.5 s runs against real API processes in
tests/faults/test_postgres_faults.py; here, the pieces it relies on."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.api.errors import unavailable
from app.core.config import get_settings
from app.core.db import db, is_connection_lost, retry_read_once, unit_of_work
from app.main import api
from tests import factories
from tests.conftest import record_figure
from tests.faults.storm import (
    random_holds,
    seat_ids_of,
    tally,
    terminate_app_backends,
    violations,
)
from tests.test_concurrency import customers

pytestmark = pytest.mark.slow

Reconfigure = Callable[..., Awaitable[None]]


@pytest.fixture
async def reconfigure(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconfigure]:
    """Change settings and rebuild the engine with them; the usual engine comes back after."""
    settings = get_settings()

    async def apply(**changes: Any) -> None:
        for name, value in changes.items():
            monkeypatch.setattr(settings, name, value)
        await db.dispose()

    yield apply
    monkeypatch.undo()
    await db.dispose()


async def send_all(
    client: httpx.AsyncClient, calls: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response | BaseException]:
    """POST every hold at once; an exception that escaped the app (a 500) is returned, not
    raised, so the test can show all of them."""
    return await asyncio.gather(
        *(client.post("/bookings/", json=body, headers=h) for body, h in calls),
        return_exceptions=True,
    )


async def still_works(client: httpx.AsyncClient, organizer: factories.Account) -> None:
    event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
    buyer = (await customers(1))[0]
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
    )
    assert held.status_code == 201, held.text
    status = await client.get(f"/events/{event_id}/status")
    assert (status.status_code, status.json()["held"]) == (200, 2)


class TestPoolExhausted:
    async def test_pool_of_one_answers_503_not_500(self, client, organizer, reconfigure) -> None:
        """50 holds at once on one connection: those that cannot get it within the pool
        timeout are told to come back (503 overloaded), at once; the rest are served."""
        event_id = await factories.seated_event(organizer, seats=30)
        seat_ids = await seat_ids_of(client, event_id)
        buyers = await customers(50)
        await reconfigure(db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.1)
        started = time.perf_counter()

        async def hold_the_connection() -> None:  # so the first holds surely find none free
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.5)"))

        calls = random_holds(event_id, seat_ids, buyers, 50, seed=11)
        blocker = asyncio.create_task(hold_the_connection())
        await asyncio.sleep(0.05)
        answers = await send_all(client, calls[:25])  # the connection is taken: 503s
        await blocker
        answers += await send_all(client, calls[25:])  # one connection for 25 at once
        elapsed = time.perf_counter() - started
        found = tally(answers)
        record_figure(f"pool of 1, 50 holds at once: {dict(found)} in {elapsed:.2f}s")
        assert found["overloaded"] > 0
        assert found[201] > 0
        assert elapsed < 10
        responses = [a for a in answers if isinstance(a, httpx.Response)]
        assert await violations(event_id, responses) == []
        await reconfigure()  # the usual pool again
        await still_works(client, organizer)


class TestBackendsKilled:
    async def test_cleanup_after_a_killed_connection_raises_nothing_new(self) -> None:
        """The unit of work's rollback on a dead connection is not a second error: the
        first one (a lost connection) is what the block raises, or nothing if it ended."""
        await self.killed_in_a_unit_of_work(use_it_after=False)
        with pytest.raises(DBAPIError) as raised:
            await self.killed_in_a_unit_of_work(use_it_after=True)
        assert is_connection_lost(raised.value)
        assert is_connection_lost(raised.value.orig)  # the DB-API error it wraps, too
        async with unit_of_work() as uow:  # and the pool hands out live connections again
            assert await uow.session.scalar(text("SELECT 2")) == 2

    async def killed_in_a_unit_of_work(self, *, use_it_after: bool) -> None:
        async with unit_of_work() as uow:
            await uow.session.execute(text("SELECT 1"))  # a transaction is open
            await terminate_app_backends()
            await asyncio.sleep(0.05)
            if use_it_after:
                await uow.session.execute(text("SELECT 1"))

    async def test_a_read_is_retried_once_on_a_fresh_connection(self) -> None:
        attempts = 0

        async def read() -> int:
            nonlocal attempts
            attempts += 1
            async with unit_of_work() as uow:
                await uow.session.execute(text("SELECT 1"))
                if attempts == 1:
                    await terminate_app_backends()
                    await asyncio.sleep(0.05)
                return int(await uow.session.scalar(text("SELECT 3")) or 0)

        assert await retry_read_once(read) == 3
        assert attempts == 2

    async def test_a_signed_in_read_survives_a_killed_pool(self, client, customer) -> None:
        """The account lookup of a request is a read: retried on a fresh connection."""
        async with unit_of_work() as uow:  # a pooled connection, killed while idle
            await uow.session.execute(text("SELECT 1"))
        await terminate_app_backends()
        await asyncio.sleep(0.05)
        me = await client.get("/auth/me", headers=customer.headers)
        assert me.status_code == 200, me.text


class TestMapping:
    def test_what_counts_as_a_lost_connection(self) -> None:
        assert is_connection_lost(ConnectionRefusedError(111, "Connect call failed"))
        assert is_connection_lost(OSError("Multiple exceptions: [Errno 111] Connect call failed"))
        assert is_connection_lost(_dbapi_error("57P01"))  # pg_terminate_backend
        assert is_connection_lost(_dbapi_error("08006"))
        assert is_connection_lost(_dbapi_error(None, "the underlying connection is closed"))
        assert is_connection_lost(asyncpg.InterfaceError("the underlying connection is closed"))
        assert not is_connection_lost(asyncpg.InterfaceError("another operation is in progress"))
        assert not is_connection_lost(_dbapi_error("23505"))
        assert not is_connection_lost(_dbapi_error("55P03"))
        assert not is_connection_lost(OSError("No such file"))
        assert not is_connection_lost(ValueError("connection is closed"))

    def test_refusals_carry_a_code_and_retry_after(self) -> None:
        lost = unavailable(_dbapi_error("57P01"))
        assert lost is not None
        assert lost.code == "database_unavailable"
        assert lost.extra["retry_after"] >= 1
        busy = unavailable(_dbapi_error("53300"))  # too_many_connections
        assert busy is not None
        assert busy.code == "overloaded"
        assert unavailable(_dbapi_error("42P01")) is None  # a bug stays a 500

    def test_openapi_declares_503_where_it_can_happen(self) -> None:
        paths = api.openapi()["paths"]
        for path, method in [
            ("/bookings/", "post"),
            ("/bookings/{booking_id}/confirm", "post"),
            ("/bookings/{booking_id}/cancel", "post"),
            ("/auth/login", "post"),
            ("/auth/register", "post"),
        ]:
            assert "503" in paths[path][method]["responses"], (path, method)


class _Orig(Exception):
    def __init__(self, state: str | None, message: str) -> None:
        super().__init__(message)
        self.sqlstate = state


def _dbapi_error(state: str | None, message: str = "error") -> DBAPIError:
    return DBAPIError("SELECT 1", None, _Orig(state, message))
