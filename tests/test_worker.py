"""The job path with a real Celery worker process and the real broker (Redis)."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from app.core.db import db
from app.core.queue import RUN_JOB, celery_app
from app.core.redis import redis
from app.infra import cache, realtime
from app.infra.cache import EventView
from app.models import Role
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.servers import WorkerProcess

pytestmark = pytest.mark.slow

WORKER_ENV = {"OUTBOX_RETRY_AFTER_S": "2", "CELERY_VISIBILITY_TIMEOUT_S": "3", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerProcess]:
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


class TestNotifications:
    async def test_confirm_notifies_exactly_once_even_if_delivered_twice(
        self, client, worker
    ) -> None:
        del worker
        buyer, _, booking_id = await confirmed_booking(client)
        await eventually(lambda: notifications_at_least(buyer.id, "booking_confirmed", 1))
        job_id = await scalar(
            "SELECT id FROM outbox WHERE payload->>'booking_id' = :b", b=str(booking_id)
        )
        await send(RUN_JOB, job_id)  # the same job delivered twice more
        await send(RUN_JOB, job_id)
        marker = await scalar("SELECT count(*) FROM outbox")
        await send("evently.relay_outbox")  # runs after the duplicates (solo pool, FIFO)
        await asyncio.sleep(0.5)
        assert await notifications(buyer.id, "booking_confirmed") == 1
        assert marker == 1
        listed = (await client.get("/notifications/", headers=buyer.headers)).json()
        assert listed["total"] == 1
        tickets = (await client.get(f"/bookings/{booking_id}", headers=buyer.headers)).json()[
            "tickets"
        ]
        assert all(t["code"] in listed["items"][0]["body"] for t in tickets)


async def notifications_at_least(user_id: int, kind: str, n: int) -> bool:
    return await notifications(user_id, kind) >= n


class TestWaitlist:
    async def test_freed_seats_go_down_the_queue_then_to_the_public(self, client, worker) -> None:
        del worker
        organizer = await factories.account(Role.ORGANIZER)
        first, second, third, public = [await factories.account() for _ in range(4)]
        event_id = await factories.event(organizer, factories.ga_spec(capacity=2))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=first.headers
        )
        await client.post(f"/bookings/{held.json()['id']}/confirm", headers=first.headers)
        for account in (second, third):
            joined = await client.post(
                "/waitlist/join",
                json={"event_id": event_id, "quantity": 2},
                headers=account.headers,
            )
            assert joined.status_code == 201, joined.text
        assert (await client.get("/waitlist/my-entries", headers=third.headers)).json()[0][
            "position"
        ] == 2

        await client.post(f"/bookings/{held.json()['id']}/cancel", headers=first.headers)
        offer = (await client.get("/bookings/my-bookings", headers=second.headers)).json()["items"][
            0
        ]
        assert (offer["status"], offer["source"], len(offer["seats"])) == ("pending", "waitlist", 2)
        assert (await client.get(f"/events/{event_id}/status")).json()["available"] == 0
        refused = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=public.headers
        )
        assert refused.status_code == 409  # not released to the public while someone waits
        await eventually(lambda: notifications_at_least(second.id, "waitlist_offer", 1))

        await expire_all_holds()
        await send("evently.expire_holds")
        await eventually(lambda: notifications_at_least(third.id, "waitlist_offer", 1))
        passed_on = (await client.get("/bookings/my-bookings", headers=third.headers)).json()[
            "items"
        ][0]
        assert (passed_on["status"], passed_on["source"]) == ("pending", "waitlist")
        entries = (await client.get("/waitlist/my-entries", headers=second.headers)).json()
        assert entries[0]["status"] == "expired"

        await expire_all_holds()
        await send("evently.expire_holds")

        async def swept() -> bool:
            status = await scalar("SELECT status FROM bookings WHERE id = :b", b=passed_on["id"])
            return status == "expired"

        await eventually(swept)
        assert (await client.get(f"/events/{event_id}/status")).json()["available"] == 2
        bought = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=public.headers
        )
        assert bought.status_code == 201, bought.text


async def expire_all_holds() -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE bookings SET expires_at = now() - interval '1 s' WHERE status = 'pending'")
        )
        await conn.execute(
            text("UPDATE seats SET held_until = now() - interval '1 s' WHERE status = 'held'")
        )


class TestSweeper:
    async def test_lapsed_hold_released_live_and_in_cache(self, client, worker) -> None:
        del worker
        organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
        event_id = await factories.seated_event(organizer, seats=10)
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 3}, headers=buyer.headers
        )
        seat_ids = sorted(s["id"] for s in held.json()["seats"])
        await client.get(f"/events/{event_id}/seats")
        assert (await client.get(f"/events/{event_id}/seats")).headers["x-cache"] == "hit"
        subscriber = Redis.from_url(TEST_REDIS_URL)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(realtime.channel(event_id))
        try:
            await expire_all_holds()
            await send("evently.expire_holds")
            message = await pubsub.get_message(timeout=10.0)
            deadline = time.monotonic() + 10
            while message is None and time.monotonic() < deadline:
                message = await pubsub.get_message(timeout=1.0)
        finally:
            await pubsub.aclose()
            await subscriber.aclose()
        assert message is not None
        import json

        change = json.loads(message["data"])
        assert (change["status"], change["seat_ids"], change["available"]) == (
            "available",
            seat_ids,
            10,
        )
        assert (
            await redis.client.exists(cache.event_key(event_id, EventView.SEATS)) == 0
        )  # invalidated
        seats = (await client.get(f"/events/{event_id}/seats")).json()["seats"]
        assert all(s["status"] == "available" for s in seats)
        assert (await client.get(f"/bookings/{held.json()['id']}", headers=buyer.headers)).json()[
            "status"
        ] == "expired"
        assert (
            await scalar("SELECT status FROM bookings WHERE id = :b", b=held.json()["id"])
            == "expired"
        )
