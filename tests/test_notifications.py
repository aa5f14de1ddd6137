"""Notifications: what each job writes, exactly once, run in-process and by a real worker."""

import asyncio

import pytest
from sqlalchemy import text

from app.core.db import db, transaction
from app.core.queue import RUN_JOB
from app.infra import outbox
from app.models import Role
from tests import factories
from tests.jobpath import (
    confirmed_booking,
    eventually,
    notifications,
    notifications_at_least,
    scalar,
    send,
    worker,
)

__all__ = ["worker"]  # the module's worker fixture


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


@pytest.mark.slow
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
