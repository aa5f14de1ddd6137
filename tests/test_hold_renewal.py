"""Hold renewal (POST /bookings/{id}/extend): a pending hold lasts HOLD_MINUTES more, at most
HOLD_MAX_RENEWALS times, its seats stay held under it, and nobody watching sees a change."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import db
from app.core.redis import redis
from app.infra import realtime
from tests import factories
from tests.test_booking_flow import expire_holds, seat_ids


async def hold_two(client, organizer, customer) -> tuple[int, list[int], dict[str, object]]:
    event_id = await factories.seated_event(organizer, seats=10)
    ids = (await seat_ids(client, event_id))[:2]
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=customer.headers
    )
    assert held.status_code == 201, held.text
    return event_id, ids, held.json()


async def stored_expiry(booking_id: int) -> tuple[datetime, set[datetime], int]:
    """The booking's expiry, its seats' distinct held_until, and its renewal count."""
    async with db.engine.connect() as conn:
        expires, renewals = (
            await conn.execute(
                text("SELECT expires_at, renewals FROM bookings WHERE id = :b"), {"b": booking_id}
            )
        ).one()
        held = {
            row[0]
            for row in await conn.execute(
                text("SELECT held_until FROM seats WHERE booking_id = :b"), {"b": booking_id}
            )
        }
    return expires, held, renewals


async def test_renewal_moves_booking_and_seats_and_announces_nothing(
    client, organizer, customer
) -> None:
    event_id, _, booking = await hold_two(client, organizer, customer)
    map_before = await client.get(f"/events/{event_id}/seats")
    seq_before = await redis.client.get(realtime.seq_key(event_id))
    # Pretend most of the hold has gone by, so a renewal visibly moves the expiry.
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE bookings SET expires_at = now() + interval '1 minute'"))
        await conn.execute(text("UPDATE seats SET held_until = now() + interval '1 minute'"))

    extended = await client.post(f"/bookings/{booking['id']}/extend", headers=customer.headers)

    assert extended.status_code == 200, extended.text
    new_expiry = datetime.fromisoformat(extended.json()["expires_at"])
    minutes = get_settings().hold_minutes
    assert new_expiry > datetime.now(UTC) + timedelta(minutes=minutes - 1)
    expires, held, renewals = await stored_expiry(booking["id"])
    assert (expires, held, renewals) == (new_expiry, {new_expiry}, 1)
    assert extended.json()["status"] == "pending"
    assert await redis.client.get(realtime.seq_key(event_id)) == seq_before  # no live message
    map_after = await client.get(f"/events/{event_id}/seats")
    assert map_after.content == map_before.content


async def test_renewed_seats_stay_held_past_the_first_expiry(client, organizer, customer) -> None:
    event_id, ids, booking = await hold_two(client, organizer, customer)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE bookings SET expires_at = now() + interval '1 second'"))
        await conn.execute(text("UPDATE seats SET held_until = now() + interval '1 second'"))
    extended = await client.post(f"/bookings/{booking['id']}/extend", headers=customer.headers)
    assert extended.status_code == 200, extended.text
    await asyncio.sleep(1.2)  # the first expiry has gone by

    rival = await factories.account()
    taken = await client.post(
        "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=rival.headers
    )
    assert taken.status_code == 409, taken.text
    confirmed = await client.post(f"/bookings/{booking['id']}/confirm", headers=customer.headers)
    assert confirmed.status_code == 200, confirmed.text


async def test_renewals_are_limited(client, organizer, customer, monkeypatch) -> None:
    monkeypatch.setattr(get_settings(), "hold_max_renewals", 2)
    _, _, booking = await hold_two(client, organizer, customer)
    url = f"/bookings/{booking['id']}/extend"
    assert (await client.post(url, headers=customer.headers)).status_code == 200
    assert (await client.post(url, headers=customer.headers)).status_code == 200
    third = await client.post(url, headers=customer.headers)
    assert third.status_code == 409
    assert third.json()["code"] == "renewal_limit"
    assert (await stored_expiry(booking["id"]))[2] == 2


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("lapsed", 410, "hold_expired"),
        ("confirmed", 409, "invalid_state"),
        ("cancelled", 409, "invalid_state"),
        ("waitlist", 409, "offer_not_renewable"),
        ("stranger", 404, "not_found"),
    ],
)
async def test_refusals(client, organizer, customer, setup, status, code) -> None:
    _, _, booking = await hold_two(client, organizer, customer)
    caller = customer
    if setup == "lapsed":
        await expire_holds()
    elif setup in ("confirmed", "cancelled"):
        verb = {"confirmed": "confirm", "cancelled": "cancel"}[setup]
        done = await client.post(f"/bookings/{booking['id']}/{verb}", headers=caller.headers)
        assert done.status_code == 200, done.text
    elif setup == "waitlist":
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE bookings SET source = 'waitlist'"))
    else:
        caller = await factories.account()
    before = await stored_expiry(booking["id"])

    refused = await client.post(f"/bookings/{booking['id']}/extend", headers=caller.headers)

    assert refused.status_code == status, refused.text
    assert refused.json()["code"] == code
    assert refused.json()["detail"]
    assert await stored_expiry(booking["id"]) == before  # nothing changed
