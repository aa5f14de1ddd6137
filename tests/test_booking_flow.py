"""The booking protocol over HTTP: hold, confirm, cancel, read, and their refusals."""

import httpx
import pytest
from sqlalchemy import text

from app.core import ticket_codes
from app.core.db import db
from app.models import Role
from tests import factories


async def seat_ids(client: httpx.AsyncClient, event_id: int) -> list[int]:
    response = await client.get(f"/events/{event_id}/seats")
    assert response.status_code == 200
    return [s["id"] for s in response.json()["seats"]]


async def expire_holds() -> None:
    """Move every hold's expiry into the past, as if HOLD_MINUTES had gone by."""
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE bookings SET expires_at = now() - interval '1 second'"))
        await conn.execute(
            text("UPDATE seats SET held_until = now() - interval '1 second' WHERE status = 'held'")
        )


class TestHold:
    async def test_hold_chosen_seats(self, client, organizer, customer) -> None:
        event_id = await factories.seated_event(organizer, seats=20, price_cents=4200)
        ids = (await seat_ids(client, event_id))[:3]
        response = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=customer.headers
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert sorted(s["id"] for s in body["seats"]) == sorted(ids)
        assert body["total_cents"] == 3 * 4200
        assert body["tickets"] == []
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert status == {
            "event_id": event_id,
            "total": 20,
            "available": 17,
            "held": 3,
            "booked": 0,
        }

    async def test_taken_seat_is_refused_naming_it_and_nothing_is_held(
        self, client, organizer, customer
    ) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        ids = await seat_ids(client, event_id)
        first = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids[:2]}, headers=customer.headers
        )
        assert first.status_code == 201
        other = await factories.account()
        second = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids[1:4]}, headers=other.headers
        )
        assert second.status_code == 409
        assert second.json()["code"] == "seats_unavailable"
        assert second.json()["seat_ids"] == [ids[1]]
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert status["held"] == 2  # all or nothing: seats 3 and 4 stayed free

    async def test_seat_of_another_event_is_refused(self, client, organizer, customer) -> None:
        first = await factories.seated_event(organizer, seats=10)
        second = await factories.seated_event(organizer, seats=10)
        foreign = (await seat_ids(client, second))[0]
        response = await client.post(
            "/bookings/", json={"event_id": first, "seat_ids": [foreign]}, headers=customer.headers
        )
        assert response.status_code == 409
        assert response.json()["seat_ids"] == [foreign]

    async def test_hold_any_n_in_a_section(self, client, organizer, customer) -> None:
        spec = factories.seated_spec([("Floor", 2, 10, 9000), ("Balcony", 2, 10, 4000)])
        event_id = await factories.event(organizer, spec)
        response = await client.post(
            "/bookings/",
            json={"event_id": event_id, "quantity": 3, "section": "balcony"},
            headers=customer.headers,
        )
        assert response.status_code == 201, response.text
        assert {s["section"] for s in response.json()["seats"]} == {"Balcony"}
        assert response.json()["total_cents"] == 12000

    async def test_any_n_beyond_what_is_free_is_refused(self, client, organizer, customer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
        response = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 4}, headers=customer.headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "not_enough_seats"
        assert response.json()["available"] == 3

    async def test_per_user_cap(self, client, organizer, customer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=50))
        ok = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 8}, headers=customer.headers
        )
        assert ok.status_code == 201
        over = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 3}, headers=customer.headers
        )
        assert over.status_code == 409
        assert over.json()["code"] == "seat_limit_exceeded"
        assert over.json()["current"] == 8

    async def test_draft_and_cancelled_events_are_not_on_sale(
        self, client, organizer, customer
    ) -> None:
        draft = await factories.event(organizer, factories.ga_spec(capacity=5), publish=False)
        response = await client.post(
            "/bookings/", json={"event_id": draft, "quantity": 1}, headers=customer.headers
        )
        assert response.status_code == 404
        live = await factories.event(organizer, factories.ga_spec(capacity=5))
        cancelled = await client.delete(f"/admin/events/{live}", headers=organizer.headers)
        assert cancelled.status_code == 200
        response = await client.post(
            "/bookings/", json={"event_id": live, "quantity": 1}, headers=customer.headers
        )
        assert response.status_code == 409
        assert "cancelled" in response.json()["detail"]

    @pytest.mark.parametrize(
        "body",
        [
            {"event_id": 1},
            {"event_id": 1, "seat_ids": [1], "quantity": 1},
            {"event_id": 1, "seat_ids": []},
            {"event_id": 1, "seat_ids": [5, 5]},
            {"event_id": 1, "quantity": 0},
            {"event_id": 1, "quantity": 1000},
            {"event_id": 1, "seat_ids": [1], "section": "A"},
            {"event_id": 99999999999, "quantity": 1},
            {"event_id": "x", "quantity": 1},
        ],
    )
    async def test_malformed_requests_are_422(self, client, customer, body) -> None:
        response = await client.post("/bookings/", json=body, headers=customer.headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert response.json()["detail"].startswith("Invalid request")

    async def test_unknown_event_is_404(self, client, customer) -> None:
        response = await client.post(
            "/bookings/", json={"event_id": 424242, "quantity": 1}, headers=customer.headers
        )
        assert response.status_code == 404


class TestConfirm:
    async def test_confirm_issues_signed_tickets(self, client, organizer, customer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        ids = (await seat_ids(client, event_id))[:2]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=customer.headers
        )
        booking_id = held.json()["id"]
        response = await client.post(
            f"/bookings/{booking_id}/confirm",
            json={"payment_token": "tok_ok"},
            headers=customer.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "confirmed"
        assert sorted(t["seat_id"] for t in body["tickets"]) == sorted(ids)
        _, keys = ticket_codes.load_keys(
            (await client.get(f"/events/{event_id}/ticket-keys")).json()
        )
        for ticket in body["tickets"]:
            claim = ticket_codes.verify(ticket["qr_code_data"], keys)
            assert (claim.event_id, claim.seat_id, claim.code) == (
                event_id,
                ticket["seat_id"],
                ticket["code"],
            )
        assert len({t["code"] for t in body["tickets"]}) == 2
        again = await client.post(f"/bookings/{booking_id}/confirm", headers=customer.headers)
        assert again.status_code == 200
        assert again.json()["tickets"] == body["tickets"]  # confirming twice: same result
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert (status["booked"], status["held"]) == (2, 0)

    async def test_declined_payment_is_402_and_keeps_the_hold(
        self, client, organizer, customer
    ) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=customer.headers
        )
        booking_id = held.json()["id"]
        declined = await client.post(
            f"/bookings/{booking_id}/confirm",
            json={"payment_token": "fail"},
            headers=customer.headers,
        )
        assert declined.status_code == 402
        assert declined.json()["code"] == "payment_declined"
        booking = await client.get(f"/bookings/{booking_id}", headers=customer.headers)
        assert booking.json()["status"] == "pending"
        assert (
            await client.post(f"/bookings/{booking_id}/confirm", headers=customer.headers)
        ).status_code == 200

    async def test_confirming_a_cancelled_booking_is_409(self, client, organizer, customer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=customer.headers
        )
        booking_id = held.json()["id"]
        await client.post(f"/bookings/{booking_id}/cancel", headers=customer.headers)
        response = await client.post(f"/bookings/{booking_id}/confirm", headers=customer.headers)
        assert response.status_code == 409


class TestExpiry:
    async def test_expired_hold_is_free_at_once_and_its_confirm_is_410(
        self, client, organizer, customer
    ) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        ids = (await seat_ids(client, event_id))[:2]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=customer.headers
        )
        booking_id = held.json()["id"]
        await expire_holds()
        seats = (await client.get(f"/events/{event_id}/seats")).json()["seats"]
        assert {s["status"] for s in seats if s["id"] in ids} == {"available"}
        other = await factories.account()
        taken = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=other.headers
        )
        assert taken.status_code == 201, taken.text
        late = await client.post(f"/bookings/{booking_id}/confirm", headers=customer.headers)
        assert late.status_code == 410
        assert late.json()["code"] == "hold_expired"
        mine = await client.get(f"/bookings/{booking_id}", headers=customer.headers)
        assert mine.json()["status"] == "expired"

    async def test_expired_but_untaken_hold_cannot_be_confirmed(
        self, client, organizer, customer
    ) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=customer.headers
        )
        await expire_holds()
        late = await client.post(f"/bookings/{held.json()['id']}/confirm", headers=customer.headers)
        assert late.status_code == 410
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert (status["available"], status["held"]) == (5, 0)


class TestCancel:
    async def test_cancel_confirmed_frees_seats(self, client, organizer, customer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        ids = (await seat_ids(client, event_id))[:2]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=customer.headers
        )
        booking_id = held.json()["id"]
        await client.post(f"/bookings/{booking_id}/confirm", headers=customer.headers)
        cancelled = await client.post(f"/bookings/{booking_id}/cancel", headers=customer.headers)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["cancelled_at"] is not None
        status = (await client.get(f"/events/{event_id}/status")).json()
        assert status["available"] == 10
        other = await factories.account()
        again = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": ids}, headers=other.headers
        )
        assert again.status_code == 201

    async def test_admin_may_cancel_any_booking(self, client, organizer, customer) -> None:
        admin = await factories.account(Role.ADMIN)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=customer.headers
        )
        response = await client.post(f"/bookings/{held.json()['id']}/cancel", headers=admin.headers)
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"

    async def test_cancelling_an_event_cancels_its_bookings(
        self, client, organizer, customer
    ) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=customer.headers
        )
        await client.post(f"/bookings/{held.json()['id']}/confirm", headers=customer.headers)
        response = await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
        assert response.json()["status"] == "cancelled"
        booking = await client.get(f"/bookings/{held.json()['id']}", headers=customer.headers)
        assert booking.json()["status"] == "cancelled"


class TestRead:
    async def test_my_bookings_newest_first_paginated(self, client, organizer, customer) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=10))
        made = []
        for _ in range(3):
            r = await client.post(
                "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=customer.headers
            )
            made.append(r.json()["id"])
        page = (await client.get("/bookings/my-bookings?limit=2", headers=customer.headers)).json()
        assert page["total"] == 3
        assert [b["id"] for b in page["items"]] == made[::-1][:2]
        rest = (
            await client.get("/bookings/my-bookings?limit=2&offset=2", headers=customer.headers)
        ).json()
        assert [b["id"] for b in rest["items"]] == [made[0]]
