"""Job handlers and the outbox, run in-process: what each job writes, exactly once."""

from sqlalchemy import text

from app.core.db import db, transaction
from app.infra import outbox
from app.models import Role
from tests import factories


async def run_job(job_id: int) -> str:
    async with transaction() as uow:  # the task scope commits, as the worker's does
        return await outbox.run(uow, job_id)


async def run_pending() -> list[str]:
    async with db.engine.connect() as conn:
        ids = list(
            await conn.scalars(text("SELECT id FROM outbox WHERE done_at IS NULL ORDER BY id"))
        )
    return [await run_job(job_id) for job_id in ids]


async def inbox(client, account) -> list[dict[str, str]]:
    return list((await client.get("/notifications/", headers=account.headers)).json()["items"])


async def test_nothing_is_queued_by_a_failed_request(client) -> None:
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
    )
    declined = await client.post(
        f"/bookings/{held.json()['id']}/confirm",
        json={"payment_token": "fail"},
        headers=buyer.headers,
    )
    assert declined.status_code == 402
    async with db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM outbox")) == 0


async def test_event_changes_reach_every_ticket_holder(client) -> None:
    organizer = await factories.account(Role.ORGANIZER)
    holders = [await factories.account() for _ in range(2)]
    onlooker = await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=10))
    for buyer in holders:
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
        )
        await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=onlooker.headers
    )
    await client.put(
        f"/admin/events/{event_id}", json={"name": "Renamed"}, headers=organizer.headers
    )
    await client.put(
        f"/admin/events/{event_id}", json={"venue": "Other Hall"}, headers=organizer.headers
    )
    assert await run_pending() == ["done"] * 3  # two confirmations, one venue change
    for buyer in holders:
        kinds = [n["kind"] for n in await inbox(client, buyer)]
        assert sorted(kinds) == ["booking_confirmed", "event_updated"]
    assert await inbox(client, onlooker) == []  # a hold is not a ticket
    await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
    assert await run_pending() == ["done"]
    assert "event_cancelled" in [n["kind"] for n in await inbox(client, onlooker)]
    assert "event_cancelled" in [n["kind"] for n in await inbox(client, holders[0])]


async def test_a_job_runs_once(client) -> None:
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
    )
    await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    async with db.engine.connect() as conn:
        job_id = await conn.scalar(text("SELECT id FROM outbox"))
    assert await run_job(job_id) == "done"
    assert await run_job(job_id) == "already done"
    assert len(await inbox(client, buyer)) == 1


async def test_admin_cancel_tells_the_customer(client) -> None:
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    admin = await factories.account(Role.ADMIN)
    event_id = await factories.event(organizer, factories.ga_spec(capacity=3))
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=buyer.headers
    )
    mine = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=admin.headers
    )
    await client.post(f"/bookings/{held.json()['id']}/cancel", headers=admin.headers)
    await client.post(
        f"/bookings/{mine.json()['id']}/cancel", headers=admin.headers
    )  # own hold: no mail
    await run_pending()
    assert [n["kind"] for n in await inbox(client, buyer)] == ["booking_cancelled"]
    assert await inbox(client, admin) == []


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
