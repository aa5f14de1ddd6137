"""The invariants of DESIGN §4 under real concurrency: many clients, many connections.

Requests go through the whole ASGI app at once (asyncio.gather) and so through a pool of
up to 40 real PostgreSQL connections; the database is checked afterwards.
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from app.core.db import db
from app.crud import inventory
from app.models import Role
from tests import factories
from tests.conftest import record_figure
from tests.faults.storm import violations

pytestmark = pytest.mark.slow


async def customers(n: int) -> list[factories.Account]:
    return [await factories.account(Role.CUSTOMER) for _ in range(n)]


async def post_all(
    client: httpx.AsyncClient, calls: list[tuple[str, dict[str, object], dict[str, str]]]
) -> list[httpx.Response]:
    return await asyncio.gather(*(client.post(url, json=body, headers=h) for url, body, h in calls))


def assert_clean_statuses(responses: list[httpx.Response]) -> Counter[int]:
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] in {
                "seats_unavailable",
                "not_enough_seats",
                "seat_limit_exceeded",
            }
    return statuses


class TestHotSeat:
    async def test_200_clients_one_seat_exactly_one_wins(self, client, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        seat = (await client.get(f"/events/{event_id}/seats")).json()["seats"][0]["id"]
        buyers = await customers(200)
        calls = [
            ("/bookings/", {"event_id": event_id, "seat_ids": [seat]}, b.headers) for b in buyers
        ]
        responses = await post_all(client, calls)
        statuses = assert_clean_statuses(responses)
        assert statuses[201] == 1
        assert statuses[409] == 199
        async with db.engine.connect() as conn:
            claims = await conn.scalar(
                text("SELECT count(*) FROM booking_seats WHERE seat_id = :s AND active"),
                {"s": seat},
            )
        assert claims == 1
        assert await violations(event_id, responses) == []


async def storm(
    client: httpx.AsyncClient, organizer: factories.Account
) -> tuple[int, list[httpx.Response]]:
    """2,000 concurrent holds of 1-4 random seats (in random order) on a 100-seat event."""
    event_id = await factories.seated_event(organizer, seats=100)
    seat_ids = [s["id"] for s in (await client.get(f"/events/{event_id}/seats")).json()["seats"]]
    buyers = await customers(250)
    rng = random.Random(20261121)
    calls = []
    for i in range(2000):
        chosen = rng.sample(seat_ids, rng.randint(1, 4))
        calls.append(
            (
                "/bookings/",
                {"event_id": event_id, "seat_ids": chosen},
                buyers[i % len(buyers)].headers,
            )
        )
    started = time.perf_counter()
    last_sale = 0.0

    async def attempt(body: dict[str, object], headers: dict[str, str]) -> httpx.Response:
        nonlocal last_sale
        response = await client.post("/bookings/", json=body, headers=headers)
        if response.status_code == 201:
            last_sale = time.perf_counter() - started
        return response

    responses = list(await asyncio.gather(*(attempt(body, h) for _, body, h in calls)))
    elapsed = time.perf_counter() - started
    sold = sum(len(r.json()["seats"]) for r in responses if r.status_code == 201)
    record_figure(
        f"storm: 2000 hold attempts in {elapsed:.2f}s = {2000 / elapsed:.0f} attempts/s; "
        f"{sum(r.status_code == 201 for r in responses)} holds won {sold}/100 seats, "
        f"the last one {last_sale:.2f}s after the start"
    )
    return event_id, responses


class TestStorm:
    async def test_no_seat_is_sold_twice(self, client, organizer) -> None:
        event_id, responses = await storm(client, organizer)
        statuses = assert_clean_statuses(responses)
        assert statuses[201] > 0
        assert await violations(event_id, responses) == []

    async def test_sells_out_and_reports_time(self, client, organizer) -> None:
        """Every seat goes; the time until the 100th seat is held is reported."""
        event_id = await factories.seated_event(organizer, seats=100)
        buyers = await customers(120)
        started = time.perf_counter()
        responses = await post_all(
            client,
            [("/bookings/", {"event_id": event_id, "quantity": 1}, b.headers) for b in buyers],
        )
        elapsed = time.perf_counter() - started
        statuses = assert_clean_statuses(responses)
        assert statuses[201] == 100
        record_figure(f"sell-out: 100 seats to 120 concurrent 'any 1' buyers in {elapsed:.2f}s")
        assert await violations(event_id, responses) == []


class TestGeneralAdmissionRush:
    async def test_500_buyers_200_places(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=200))
        buyers = await customers(500)
        responses = await post_all(
            client,
            [("/bookings/", {"event_id": event_id, "quantity": 1}, b.headers) for b in buyers],
        )
        statuses = assert_clean_statuses(responses)
        assert statuses[201] == 200
        assert statuses[409] == 300
        assert await violations(event_id, responses) == []
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert (status["available"], status["held"]) == (0, 200)


@pytest.fixture
async def locks_disabled(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Bypass both defences: the row locks (the inventory's seam: chosen seats read
    without FOR UPDATE) and the backstop index."""
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP INDEX uq_booking_seats_active_seat"))
    unlocked = inventory.seats_for_hold(inventory.CHOSEN, lock=False)
    monkeypatch.setattr(inventory, "CHOSEN_SEATS", unlocked)
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE booking_seats, bookings CASCADE"))
            await conn.execute(
                text(
                    "CREATE UNIQUE INDEX uq_booking_seats_active_seat"
                    " ON booking_seats (seat_id) WHERE active"
                )
            )


class TestNegativeControl:
    async def test_storm_detects_oversell_when_locking_is_off(
        self, client, organizer, locks_disabled
    ) -> None:
        """Proof that the storm test can fail: without locks it must catch a double sale."""
        del locks_disabled
        event_id, responses = await storm(client, organizer)
        found = await violations(event_id, responses)
        record_figure(f"negative control: {len(found)} invariant violations found with locking off")
        assert found, "the storm test did not notice an oversell with locking disabled"


class TestIdempotency:
    async def test_five_concurrent_retries_make_one_booking(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        buyer = (await customers(1))[0]
        headers = {**buyer.headers, "Idempotency-Key": "checkout-42"}
        body = {"event_id": event_id, "quantity": 2}
        responses = await post_all(client, [("/bookings/", body, headers)] * 5)
        assert [r.status_code for r in responses] == [201] * 5
        assert len({r.content for r in responses}) == 1
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM bookings")) == 1

    async def test_same_key_other_body_is_422(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        buyer = (await customers(1))[0]
        headers = {**buyer.headers, "Idempotency-Key": "k1"}
        first = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=headers
        )
        assert first.status_code == 201
        other = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=headers
        )
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_keys_are_per_user(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        a, b = await customers(2)
        body = {"event_id": event_id, "quantity": 1}
        ra = await client.post(
            "/bookings/", json=body, headers={**a.headers, "Idempotency-Key": "same"}
        )
        rb = await client.post(
            "/bookings/", json=body, headers={**b.headers, "Idempotency-Key": "same"}
        )
        assert (ra.status_code, rb.status_code) == (201, 201)
        assert ra.json()["id"] != rb.json()["id"]

    async def test_confirm_with_key_replays(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        buyer = (await customers(1))[0]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
        )
        headers = {**buyer.headers, "Idempotency-Key": "pay-1"}
        url = f"/bookings/{held.json()['id']}/confirm"
        responses = await post_all(client, [(url, {"payment_token": "ok"}, headers)] * 3)
        assert [r.status_code for r in responses] == [200] * 3
        assert len({r.content for r in responses}) == 1
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM tickets")) == 1

    async def test_failed_request_does_not_burn_the_key(self, client, organizer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        buyer = (await customers(1))[0]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
        )
        headers = {**buyer.headers, "Idempotency-Key": "pay-2"}
        url = f"/bookings/{held.json()['id']}/confirm"
        declined = await client.post(url, json={"payment_token": "fail"}, headers=headers)
        assert declined.status_code == 402
        # Change what a re-run would find: a stored 402 would be replayed as 402, a
        # re-executed request meets the cancelled booking (409).
        cancel = await client.post(f"/bookings/{held.json()['id']}/cancel", headers=buyer.headers)
        assert cancel.status_code == 200
        retried = await client.post(url, json={"payment_token": "fail"}, headers=headers)
        assert retried.status_code == 409, retried.text  # re-executed, not replayed
        assert retried.json()["code"] == "invalid_state"
