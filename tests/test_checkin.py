"""Admission at the door: once per ticket, signatures verified, wrong tickets refused."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import db
from app.core.security import sign_ticket
from app.models import Role
from tests import factories


@pytest.fixture
async def sold(client) -> tuple[factories.Account, int, list[dict[str, object]]]:
    """(organizer, event, tickets) of a confirmed two-seat booking."""
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=10))
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
    )
    confirmed = await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    return organizer, event_id, confirmed.json()["tickets"]


async def test_valid_once_then_refused_with_the_first_time(client, sold) -> None:
    organizer, event_id, tickets = sold
    body = {"qr_code_data": tickets[0]["qr_code_data"], "event_id": event_id}
    first = await client.post("/admin/checkin", json=body, headers=organizer.headers)
    assert first.status_code == 200, first.text
    assert first.json()["code"] == tickets[0]["code"]
    second = await client.post("/admin/checkin", json=body, headers=organizer.headers)
    assert second.status_code == 409
    assert second.json()["code"] == "already_checked_in"
    assert second.json()["checked_in_at"] == first.json()["checked_in_at"].replace("Z", "+00:00")
    by_code = await client.post(
        "/admin/checkin", json={"code": tickets[1]["code"]}, headers=organizer.headers
    )
    assert by_code.status_code == 200


async def test_concurrent_scans_admit_once(client, sold) -> None:
    organizer, _, tickets = sold
    body = {"code": tickets[0]["code"]}
    responses = await asyncio.gather(
        *(client.post("/admin/checkin", json=body, headers=organizer.headers) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9


async def test_forged_and_tampered_qr_refused(client, sold) -> None:
    organizer, _, tickets = sold
    genuine = str(tickets[0]["qr_code_data"])
    forged = genuine[:-4] + ("0000" if not genuine.endswith("0000") else "1111")
    other_seat = genuine.split(".")
    other_seat[2] = str(int(other_seat[2]) + 1)
    for qr in (forged, ".".join(other_seat), "EVT1.1.1.ABCDEFGHJKLM.deadbeef"):
        response = await client.post(
            "/admin/checkin", json={"qr_code_data": qr}, headers=organizer.headers
        )
        assert response.status_code == 400, qr
        assert response.json()["code"] == "invalid_ticket"


async def test_cancelled_booking_and_other_event_refused(client, sold) -> None:
    organizer, event_id, tickets = sold
    other_event = await factories.event(organizer, factories.ga_spec(capacity=5))
    wrong_door = await client.post(
        "/admin/checkin",
        json={"code": tickets[0]["code"], "event_id": other_event},
        headers=organizer.headers,
    )
    assert (wrong_door.status_code, wrong_door.json()["code"]) == (409, "wrong_event")
    admin = await factories.account(Role.ADMIN)
    async with db.engine.connect() as conn:
        booking = await conn.scalar(
            text("SELECT booking_id FROM tickets WHERE code = :c"), {"c": tickets[0]["code"]}
        )
    await client.post(f"/bookings/{booking}/cancel", headers=admin.headers)
    refused = await client.post(
        "/admin/checkin", json={"code": tickets[0]["code"]}, headers=organizer.headers
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "not_valid")
    assert event_id != other_event


async def test_only_the_organizer_or_an_admin(client, sold) -> None:
    _, _, tickets = sold
    stranger = await factories.account(Role.ORGANIZER)
    customer = await factories.account()
    body = {"code": tickets[0]["code"]}
    assert (
        await client.post("/admin/checkin", json=body, headers=stranger.headers)
    ).status_code == 403
    assert (
        await client.post("/admin/checkin", json=body, headers=customer.headers)
    ).status_code == 403
    admin = await factories.account(Role.ADMIN)
    assert (
        await client.post("/admin/checkin", json=body, headers=admin.headers)
    ).status_code == 200
    unknown = await client.post(
        "/admin/checkin", json={"code": "NOPE2345ABCD"}, headers=admin.headers
    )
    assert unknown.status_code == 404
    both = await client.post(
        "/admin/checkin", json={"code": "X" * 12, "qr_code_data": "y" * 20}, headers=admin.headers
    )
    assert both.status_code == 422


async def test_same_scan_uploaded_again_is_not_a_second_entry(client, sold) -> None:
    organizer, _, tickets = sold
    scan = {"qr_code_data": tickets[0]["qr_code_data"], "nonce": "scanner7-000123"}
    first = await client.post("/admin/checkin", json=scan, headers=organizer.headers)
    assert (first.status_code, first.json()["replayed"]) == (200, False), first.text
    again = await client.post("/admin/checkin", json=scan, headers=organizer.headers)
    assert (again.status_code, again.json()["replayed"]) == (200, True), again.text
    assert again.json()["checked_in_at"] == first.json()["checked_in_at"]
    other_scan = {**scan, "nonce": "scanner9-000001"}
    second_entry = await client.post("/admin/checkin", json=other_scan, headers=organizer.headers)
    assert (second_entry.status_code, second_entry.json()["code"]) == (409, "already_checked_in")
    no_nonce = await client.post(
        "/admin/checkin", json={"code": tickets[0]["code"]}, headers=organizer.headers
    )
    assert no_nonce.status_code == 409
    # A ticket admitted without a nonce: no later scan can claim to be that one.
    await client.post(
        "/admin/checkin", json={"code": tickets[1]["code"]}, headers=organizer.headers
    )
    late = await client.post(
        "/admin/checkin",
        json={"code": tickets[1]["code"], "nonce": "scanner7-000124"},
        headers=organizer.headers,
    )
    assert late.status_code == 409


async def test_hmac_codes_of_tickets_issued_before_the_switch(client, sold, monkeypatch) -> None:
    """EVT1 (HMAC) codes admit tickets issued as EVT1, until TICKET_HMAC_ACCEPTED_UNTIL."""
    organizer, event_id, tickets = sold
    legacy = [sign_ticket(event_id, int(t["seat_id"]), str(t["code"])) for t in tickets]
    async with db.engine.begin() as conn:  # ticket 0 as issued before Ed25519
        await conn.execute(
            text("UPDATE tickets SET qr_code_data = :q WHERE code = :c"),
            {"q": legacy[0], "c": tickets[0]["code"]},
        )
    monkeypatch.setattr(get_settings(), "ticket_hmac_accepted_until", datetime.now(UTC))
    expired = await client.post(
        "/admin/checkin", json={"qr_code_data": legacy[0]}, headers=organizer.headers
    )
    assert (expired.status_code, expired.json()["code"]) == (400, "invalid_ticket")
    monkeypatch.setattr(
        get_settings(), "ticket_hmac_accepted_until", datetime.now(UTC) + timedelta(days=1)
    )
    admitted = await client.post(
        "/admin/checkin", json={"qr_code_data": legacy[0]}, headers=organizer.headers
    )
    assert admitted.status_code == 200, admitted.text
    # Ticket 1 was issued as EVT2: an HMAC code minted for it now does not admit.
    minted = await client.post(
        "/admin/checkin", json={"qr_code_data": legacy[1]}, headers=organizer.headers
    )
    assert (minted.status_code, minted.json()["code"]) == (400, "invalid_ticket")
