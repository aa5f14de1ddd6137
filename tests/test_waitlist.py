"""The waitlist: joining and leaving, offers of freed seats in FIFO order among those
that fit, and the whole chain through a real worker (offer, lapse, pass on)."""

import pytest

from app.models import Role
from tests import factories
from tests.jobpath import (
    eventually,
    expire_all_holds,
    notifications_at_least,
    scalar,
    send,
    worker,
)

__all__ = ["worker"]  # the module's worker fixture


class TestWaitlistRules:
    async def test_join_refused_while_seats_are_free_and_only_once(self, client) -> None:
        organizer, buyer, fan = [
            await factories.account(r) for r in (Role.ORGANIZER, Role.CUSTOMER, Role.CUSTOMER)
        ]
        event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
        early = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 2}, headers=fan.headers
        )
        assert (early.status_code, early.json()["available"]) == (409, 3)
        await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
        )
        joined = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 2}, headers=fan.headers
        )
        assert joined.status_code == 201
        twice = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 2}, headers=fan.headers
        )
        assert twice.status_code == 409
        too_many = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 11}, headers=buyer.headers
        )
        # The per-user cap is one rule with one answer, for holds and the waitlist alike.
        assert too_many.status_code == 409
        assert too_many.json()["code"] == "seat_limit_exceeded"

    async def test_leave_and_ownership(self, client) -> None:
        organizer, buyer, fan = [
            await factories.account(r) for r in (Role.ORGANIZER, Role.CUSTOMER, Role.CUSTOMER)
        ]
        event_id = await factories.event(organizer, factories.ga_spec(capacity=1))
        await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
        )
        entry = (
            await client.post(
                "/waitlist/join", json={"event_id": event_id, "quantity": 1}, headers=fan.headers
            )
        ).json()
        assert (
            await client.delete(f"/waitlist/{entry['id']}", headers=buyer.headers)
        ).status_code == 404
        left = await client.delete(f"/waitlist/{entry['id']}", headers=fan.headers)
        assert left.json()["status"] == "left"
        again = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 1}, headers=fan.headers
        )
        assert again.status_code == 201  # leaving frees the one-active-entry slot

    async def test_smaller_request_behind_a_bigger_one_is_served(self, client) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        holder, big, small = [await factories.account() for _ in range(3)]
        event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=holder.headers
        )
        await client.post(
            "/bookings/",
            json={"event_id": event_id, "quantity": 2},
            headers=(await factories.account()).headers,
        )
        await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 3}, headers=big.headers
        )
        await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 1}, headers=small.headers
        )
        await client.post(f"/bookings/{held.json()['id']}/cancel", headers=holder.headers)
        big_entry = (await client.get("/waitlist/my-entries", headers=big.headers)).json()[0]
        small_entry = (await client.get("/waitlist/my-entries", headers=small.headers)).json()[0]
        assert (big_entry["status"], big_entry["position"]) == ("waiting", 1)
        assert small_entry["status"] == "offered"
        offer = await client.get(
            f"/bookings/{small_entry['offered_booking_id']}", headers=small.headers
        )
        assert offer.json()["source"] == "waitlist"
        confirmed = await client.post(
            f"/bookings/{small_entry['offered_booking_id']}/confirm", headers=small.headers
        )
        assert confirmed.status_code == 200
        assert (await client.get("/waitlist/my-entries", headers=small.headers)).json()[0][
            "status"
        ] == "fulfilled"


@pytest.mark.slow
class TestWaitlistThroughAWorker:
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
