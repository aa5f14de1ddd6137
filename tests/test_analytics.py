"""Analytics equal exactly what the test set up."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from app.core.db import db, transaction
from app.models import ReportPeriod, Role
from app.services import analytics
from tests import factories


async def book(
    client, buyer, event_id: int, quantity: int, *, confirm: bool, cancel: bool = False
) -> int:
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": quantity}, headers=buyer.headers
    )
    assert held.status_code == 201, held.text
    booking_id = int(held.json()["id"])
    if confirm:
        assert (
            await client.post(f"/bookings/{booking_id}/confirm", headers=buyer.headers)
        ).status_code == 200
    if cancel:
        assert (
            await client.post(f"/bookings/{booking_id}/cancel", headers=buyer.headers)
        ).status_code == 200
    return booking_id


async def scenario(client) -> tuple[factories.Account, factories.Account, int, int, int]:
    """Two organizers; event A: 10 seats at 10.00, event B: 4 seats at 25.00, event C (other)."""
    alice, bob = await factories.account(Role.ORGANIZER), await factories.account(Role.ORGANIZER)
    a = await factories.event(alice, factories.ga_spec(capacity=10, price_cents=1000, name="A"))
    b = await factories.event(alice, factories.ga_spec(capacity=4, price_cents=2500, name="B"))
    c = await factories.event(bob, factories.ga_spec(capacity=5, price_cents=500, name="C"))
    x, y, z = [await factories.account() for _ in range(3)]
    await book(client, x, a, 3, confirm=True)  # A: 3 sold, 30.00
    await book(client, y, a, 2, confirm=True, cancel=True)  # cancelled after paying
    await book(client, z, a, 1, confirm=False)  # pending hold
    await book(client, x, b, 4, confirm=True)  # B: sold out, 100.00
    await book(client, y, c, 5, confirm=True)  # C (bob): 25.00
    waiting = await client.post(
        "/waitlist/join", json={"event_id": b, "quantity": 2}, headers=z.headers
    )
    assert waiting.status_code == 201
    return alice, bob, a, b, c


async def test_organizer_summary_is_exact(client) -> None:
    alice, _, a, b, _ = await scenario(client)
    response = await client.get("/admin/analytics/summary", headers=alice.headers)
    assert response.status_code == 200
    summary = response.json()
    assert summary["bookings_by_status"] == {
        "pending": 1,
        "confirmed": 2,
        "cancelled": 1,
        "expired": 0,
    }
    assert summary["revenue_cents"] == 3000 + 10000
    assert summary["cancellation_rate"] == round(1 / 3, 4)
    by_id = {e["event_id"]: e for e in summary["events"]}
    assert set(by_id) == {a, b}  # not bob's event
    assert (by_id[a]["seats_sold"], by_id[a]["utilization"], by_id[a]["revenue_cents"]) == (
        3,
        0.3,
        3000,
    )
    assert (by_id[b]["seats_sold"], by_id[b]["utilization"], by_id[b]["waitlist"]) == (4, 1.0, 1)
    assert [e["event_id"] for e in summary["top_events"]] == [b, a]
    assert summary["waitlist_total"] == 1
    today = datetime.now(UTC).date().isoformat()
    assert summary["bookings_per_day"] == [{"day": today, "bookings": 4, "confirmed": 2}]


async def test_admin_sees_everything_and_customers_nothing(client) -> None:
    await scenario(client)
    admin, customer = await factories.account(Role.ADMIN), await factories.account()
    summary = (await client.get("/admin/analytics/summary", headers=admin.headers)).json()
    assert summary["revenue_cents"] == 3000 + 10000 + 2500
    assert len(summary["events"]) == 3
    assert (
        await client.get("/admin/analytics/summary", headers=customer.headers)
    ).status_code == 403


async def store_report(period: ReportPeriod, today: date) -> date:
    async with transaction() as uow:  # the task scope commits, as the worker's does
        return await analytics.store_report(uow, period, today)


async def test_stored_reports(client) -> None:
    await scenario(client)
    async with db.engine.begin() as conn:  # yesterday's bookings, for the daily report
        await conn.execute(text("UPDATE bookings SET created_at = created_at - interval '1 day'"))
    today = datetime.now(UTC).date()
    start = await store_report(ReportPeriod.DAILY, today)
    assert start == today - timedelta(days=1)
    await store_report(ReportPeriod.DAILY, today)  # again: still one row
    weekly = await store_report(ReportPeriod.WEEKLY, date(2026, 11, 25))  # a Wednesday
    assert weekly == date(2026, 11, 16)  # the Monday of the week before
    admin = await factories.account(Role.ADMIN)
    listed = (
        await client.get("/admin/analytics/reports?period=daily", headers=admin.headers)
    ).json()
    assert listed["total"] == 1
    data = listed["items"][0]["data"]
    expected = {"pending": 1, "confirmed": 3, "cancelled": 1, "expired": 0}
    assert data["bookings_by_status"] == expected
    assert data["revenue_cents"] == 3000 + 10000 + 2500
    assert (await client.get("/admin/analytics/reports", headers=admin.headers)).json()[
        "total"
    ] == 2
    organizer = await factories.account(Role.ORGANIZER)
    assert (
        await client.get("/admin/analytics/reports", headers=organizer.headers)
    ).status_code == 403
