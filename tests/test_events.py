"""Events: creation with seat layouts, updates, publishing, listing, seat maps."""

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Role
from tests import factories


def iso(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


SEATED = {
    "name": "Quartet",
    "description": "Strings",
    "venue": "Small Hall",
    "category": "music",
    "starts_at": iso(10),
    "seating": "seated",
    "layout": {
        "sections": [
            {"name": "Stalls", "rows": 3, "seats_per_row": 4, "price_cents": 3000},
            {"name": "Circle", "rows": 2, "seats_per_row": 5, "price_cents": 2000},
        ]
    },
}


class TestCreate:
    async def test_seated_layout_makes_every_seat(self, client, organizer) -> None:
        response = await client.post("/admin/events", json=SEATED, headers=organizer.headers)
        assert response.status_code == 201, response.text
        event = response.json()
        assert (event["status"], event["total_capacity"]) == ("draft", 22)
        await client.post(f"/admin/events/{event['id']}/publish", headers=organizer.headers)
        seats = (await client.get(f"/events/{event['id']}/seats")).json()["seats"]
        assert len(seats) == 22
        labels = {s["label"] for s in seats}
        assert {"Stalls-1-1", "Stalls-3-4", "Circle-2-5"} <= labels
        assert {s["price_cents"] for s in seats if s["section"] == "Circle"} == {2000}
        assert {s["status"] for s in seats} == {"available"}

    async def test_general_admission(self, client, organizer) -> None:
        body = {**SEATED, "seating": "general_admission", "capacity": 300, "price_cents": 1500}
        del body["layout"]
        response = await client.post("/admin/events", json=body, headers=organizer.headers)
        assert response.status_code == 201, response.text
        event_id = response.json()["id"]
        await client.post(f"/admin/events/{event_id}/publish", headers=organizer.headers)
        detail = (await client.get(f"/events/{event_id}")).json()
        assert detail["availability"] == {"total": 300, "available": 300, "held": 0, "booked": 0}
        assert detail["price_min_cents"] == detail["price_max_cents"] == 1500

    @pytest.mark.parametrize(
        "change",
        [
            {"starts_at": iso(-1)},
            {"starts_at": "2030-01-01T10:00:00"},  # no time zone
            {"seating": "standing"},
            {"layout": {"sections": []}},
            {
                "layout": {
                    "sections": [{"name": "A", "rows": 0, "seats_per_row": 5, "price_cents": 1}]
                }
            },
            {
                "layout": {
                    "sections": [{"name": "A", "rows": 1, "seats_per_row": 5, "price_cents": -1}]
                }
            },
            {
                "layout": {
                    "sections": [{"name": "A", "rows": 500, "seats_per_row": 500, "price_cents": 1}]
                }
            },
            {
                "layout": {
                    "sections": [
                        {"name": "A", "rows": 1, "seats_per_row": 5, "price_cents": 1},
                        {"name": "a", "rows": 1, "seats_per_row": 5, "price_cents": 1},
                    ]
                }
            },
            {"name": ""},
            {"name": "bad\u0000name"},
        ],
    )
    async def test_bad_event_is_4xx_and_creates_nothing(self, client, organizer, change) -> None:
        response = await client.post(
            "/admin/events", json={**SEATED, **change}, headers=organizer.headers
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["detail"]
        listing = await client.get("/admin/events", headers=organizer.headers)
        assert listing.json()["total"] == 0


class TestLifecycle:
    async def test_update_publish_cancel(self, client, organizer) -> None:
        created = await client.post("/admin/events", json=SEATED, headers=organizer.headers)
        event_id = created.json()["id"]
        updated = await client.put(
            f"/admin/events/{event_id}", json={"venue": "Big Hall"}, headers=organizer.headers
        )
        assert updated.json()["venue"] == "Big Hall"
        assert updated.json()["name"] == "Quartet"
        published = await client.post(
            f"/admin/events/{event_id}/publish", headers=organizer.headers
        )
        assert published.json()["status"] == "published"
        cancelled = await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
        assert cancelled.json()["status"] == "cancelled"
        again = await client.put(
            f"/admin/events/{event_id}", json={"name": "x"}, headers=organizer.headers
        )
        assert again.status_code == 409
        republish = await client.post(
            f"/admin/events/{event_id}/publish", headers=organizer.headers
        )
        assert republish.status_code == 409

    async def test_admin_manages_any_event(self, client, organizer) -> None:
        admin = await factories.account(Role.ADMIN)
        event_id = await factories.event(organizer, factories.ga_spec(5), publish=False)
        response = await client.post(f"/admin/events/{event_id}/publish", headers=admin.headers)
        assert response.json()["status"] == "published"
        everything = await client.get("/admin/events", headers=admin.headers)
        assert everything.json()["total"] == 1

    async def test_unknown_event_is_404(self, client, organizer) -> None:
        assert (
            await client.put("/admin/events/777", json={}, headers=organizer.headers)
        ).status_code == 404
        assert (await client.get("/events/777")).status_code == 404
        assert (await client.get("/events/777/seats")).status_code == 404
        assert (await client.get("/events/777/status")).status_code == 404


class TestListing:
    async def test_only_published_upcoming_with_filters_and_pages(self, client, organizer) -> None:
        await factories.event(organizer, factories.ga_spec(5, name="Jazz Night"))
        await factories.event(organizer, factories.ga_spec(5, name="Rock Fest"))
        await factories.event(organizer, factories.seated_spec(name="Opera Gala"))
        await factories.event(organizer, factories.ga_spec(5, name="Secret Draft"), publish=False)
        everything = (await client.get("/events/")).json()
        assert everything["total"] == 3
        assert "Secret Draft" not in {e["name"] for e in everything["items"]}
        music = (await client.get("/events/?category=MUSIC")).json()
        assert [e["name"] for e in music["items"]] == ["Opera Gala"]
        found = (await client.get("/events/?q=jazz")).json()
        assert [e["name"] for e in found["items"]] == ["Jazz Night"]
        page = (await client.get("/events/?limit=2&offset=2")).json()
        assert (page["total"], len(page["items"]), page["limit"], page["offset"]) == (3, 1, 2, 2)
        later = (await client.get("/events/", params={"from": iso(60)})).json()
        assert later["total"] == 0
        assert (await client.get("/events/?q=%25")).json()["total"] == 0  # % is literal

    @pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "from=yesterday"])
    async def test_bad_query_is_422(self, client, query) -> None:
        assert (await client.get(f"/events/?{query}")).status_code == 422
