"""The hold sweeper, run by a real worker: lapsed holds are released, live and in cache."""

import time

import pytest
from redis.asyncio import Redis

from app.infra import cache, realtime
from app.infra.cache import EventView
from app.models import Role
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.jobpath import expire_all_holds, scalar, send, worker

pytestmark = pytest.mark.slow
__all__ = ["worker"]  # the module's worker fixture


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
        key, version_key = (
            cache.event_key(event_id, EventView.SEATS),
            cache.event_version_key(event_id),
        )
        found = await cache.fetch(key, version_key)
        assert found is not None
        assert found.payload.version < found.version  # the cached map is now stale
        seats = (await client.get(f"/events/{event_id}/seats")).json()["seats"]
        assert all(s["status"] == "available" for s in seats)
        assert (await client.get(f"/bookings/{held.json()['id']}", headers=buyer.headers)).json()[
            "status"
        ] == "expired"
        assert (
            await scalar("SELECT status FROM bookings WHERE id = :b", b=held.json()["id"])
            == "expired"
        )
