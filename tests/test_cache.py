"""Cache-aside: hits come from Redis, every write path invalidates after commit."""

import httpx

from app.core.redis import redis
from app.infra import cache
from app.infra.cache import EventView
from app.models import Role
from tests import factories


async def seats(client: httpx.AsyncClient, event_id: int) -> dict[int, str]:
    response = await client.get(f"/events/{event_id}/seats")
    assert response.status_code == 200
    return {s["id"]: s["status"] for s in response.json()["seats"]}


async def cached_keys(event_id: int) -> list[bool]:
    return [bool(await redis.client.exists(k)) for k in cache.event_keys(event_id)]


class TestHits:
    async def test_second_read_is_served_from_redis(self, client, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=20)
        first = await client.get(f"/events/{event_id}/seats")
        assert "x-cache" not in first.headers
        assert await redis.client.exists(cache.event_key(event_id, EventView.SEATS)) == 1
        second = await client.get(f"/events/{event_id}/seats")
        assert second.headers["x-cache"] == "hit"
        assert second.content == first.content
        assert second.headers["etag"] == first.headers["etag"]

    async def test_if_none_match_gives_304(self, client, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=20)
        first = await client.get(f"/events/{event_id}")
        again = await client.get(
            f"/events/{event_id}", headers={"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
        assert first.headers["cache-control"] == "no-cache"
        other = await client.get(f"/events/{event_id}", headers={"If-None-Match": '"stale"'})
        assert other.status_code == 200

    async def test_lists_are_cached_per_filter_set(self, client, organizer) -> None:
        await factories.event(organizer, factories.ga_spec(5, name="Jazz"))
        await client.get("/events/?q=jazz")
        assert (await client.get("/events/?q=jazz")).headers.get("x-cache") == "hit"
        assert "x-cache" not in (await client.get("/events/?q=rock")).headers

    async def test_disabled_cache_never_stores(self, client, organizer) -> None:
        from app.core.config import get_settings

        event_id = await factories.seated_event(organizer, seats=20)
        get_settings().cache_enabled = False
        try:
            await client.get(f"/events/{event_id}/seats")
            assert "x-cache" not in (await client.get(f"/events/{event_id}/seats")).headers
            assert await cached_keys(event_id) == [False, False, False]
        finally:
            get_settings().cache_enabled = True


class TestInvalidation:
    async def test_hold_confirm_cancel_each_show_at_once(self, client, organizer, customer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        seat_id = next(iter(await seats(client, event_id)))
        await client.get(f"/events/{event_id}/status")
        assert (await client.get(f"/events/{event_id}/seats")).headers["x-cache"] == "hit"
        held = await client.post(
            "/bookings/",
            json={"event_id": event_id, "seat_ids": [seat_id]},
            headers=customer.headers,
        )
        assert (await seats(client, event_id))[seat_id] == "held"
        assert (await client.get(f"/events/{event_id}/status")).json()["held"] == 1
        await client.post(f"/bookings/{held.json()['id']}/confirm", headers=customer.headers)
        assert (await seats(client, event_id))[seat_id] == "booked"
        assert (await client.get(f"/events/{event_id}")).json()["availability"]["booked"] == 1
        await client.post(f"/bookings/{held.json()['id']}/cancel", headers=customer.headers)
        assert (await seats(client, event_id))[seat_id] == "available"
        assert (await client.get(f"/events/{event_id}/status")).json()["available"] == 10

    async def test_event_update_publish_cancel_show_at_once(self, client, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        await client.get(f"/events/{event_id}")
        assert (await client.get("/events/")).json()["total"] == 1
        await client.put(
            f"/admin/events/{event_id}", json={"venue": "New Hall"}, headers=organizer.headers
        )
        assert (await client.get(f"/events/{event_id}")).json()["venue"] == "New Hall"
        assert (await client.get("/events/")).json()["items"][0]["venue"] == "New Hall"
        draft = await factories.event(organizer, factories.ga_spec(5), publish=False)
        await client.post(f"/admin/events/{draft}/publish", headers=organizer.headers)
        assert (await client.get("/events/")).json()["total"] == 2
        await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
        assert (await client.get(f"/events/{event_id}")).json()["status"] == "cancelled"
        assert (await client.get("/events/")).json()["total"] == 1

    async def test_refused_hold_leaves_the_cache_alone(self, client, organizer, customer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        seat_id = next(iter(await seats(client, event_id)))
        await client.post(
            "/bookings/",
            json={"event_id": event_id, "seat_ids": [seat_id]},
            headers=customer.headers,
        )
        before = await client.get(f"/events/{event_id}/seats")
        version = await redis.client.get(cache.event_version_key(event_id))
        other = await factories.account()
        refused = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": [seat_id]}, headers=other.headers
        )
        assert refused.status_code == 409  # rolled back: nothing to invalidate or announce
        assert await redis.client.get(cache.event_version_key(event_id)) == version
        after = await client.get(f"/events/{event_id}/seats")
        assert after.headers["x-cache"] == "hit"
        assert after.content == before.content

    async def test_read_in_flight_cannot_store_stale_data(self, organizer) -> None:
        """A reader that started before an invalidation must not write its old bytes back."""
        event_id = await factories.seated_event(organizer, seats=10)
        key, version_key = (
            cache.event_key(event_id, EventView.SEATS),
            cache.event_version_key(event_id),
        )

        async def slow_read_overtaken_by_a_write() -> bytes:
            await cache.invalidate_event(event_id)  # a write commits while we read
            return b'{"stale": true}'

        await cache.cached(key, version_key, 60, slow_read_overtaken_by_a_write)
        assert await redis.client.exists(key) == 0


async def test_hits_carry_a_request_id(client) -> None:
    organizer = await factories.account(Role.ORGANIZER)
    event_id = await factories.seated_event(organizer, seats=10)
    await client.get(f"/events/{event_id}/status")
    hit = await client.get(f"/events/{event_id}/status", headers={"X-Request-ID": "door-7"})
    assert hit.headers["x-cache"] == "hit"
    assert hit.headers["x-request-id"] == "door-7"
