"""Live availability across two real API processes, over Redis pub/sub."""

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.models import Role
from tests import factories
from tests.servers import ApiProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_apis() -> Iterator[tuple[ApiProcess, ApiProcess]]:
    a, b = ApiProcess(env={}), ApiProcess(env={})
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def ws_url(api: ApiProcess, path: str) -> str:
    return api.url.replace("http://", "ws://") + path


async def receive(ws: ClientConnection, within: float = 1.0) -> dict[str, object]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), within)))


@pytest.fixture
async def event_and_buyer() -> tuple[int, factories.Account]:
    organizer = await factories.account(Role.ORGANIZER)
    event_id = await factories.seated_event(organizer, seats=30)
    return event_id, await factories.account()


async def test_change_through_b_reaches_client_on_a(two_apis, event_and_buyer) -> None:
    a, b = two_apis
    event_id, buyer = event_and_buyer
    async with connect(ws_url(a, f"/events/{event_id}/live")) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert (snapshot["available"], snapshot["held"], snapshot["booked"]) == (30, 0, 0)
        assert len(snapshot["seats"]) == 30  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=b.url) as http:
            held = await http.post(
                "/bookings/", json={"event_id": event_id, "quantity": 3}, headers=buyer.headers
            )
            assert held.status_code == 201
            change = await receive(ws, within=1.0)  # within 1 s, from the other process
            assert change["type"] == "seats"
            assert change["status"] == "held"
            assert change["seat_ids"] == sorted(s["id"] for s in held.json()["seats"])
            assert change["available"] == 27
            assert change["seq"] == int(snapshot["seq"]) + 1  # type: ignore[call-overload]
            await http.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
            booked = await receive(ws)
            assert (booked["status"], booked["seq"]) == ("booked", change["seq"] + 1)  # type: ignore[operator]
        await ws.send(json.dumps({"type": "resync"}))
        fresh = await receive(ws)
        assert fresh["type"] == "snapshot"
        assert fresh["seq"] == booked["seq"]
        assert (fresh["available"], fresh["held"], fresh["booked"]) == (27, 0, 3)


async def test_reconnect_gets_a_consistent_snapshot(two_apis, event_and_buyer) -> None:
    a, b = two_apis
    event_id, buyer = event_and_buyer
    async with httpx.AsyncClient(base_url=b.url) as http:
        await http.post(
            "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
        )
    async with connect(ws_url(a, f"/events/{event_id}/live")) as ws:
        snapshot = await receive(ws)
        # Two changes were announced before we connected: the publish, then the hold.
        assert (snapshot["held"], snapshot["seq"]) == (2, 2)
        statuses = [s["status"] for s in snapshot["seats"]]  # type: ignore[union-attr]
        assert statuses.count("held") == 2


async def test_unknown_event_closes_with_4404(two_apis) -> None:
    a, _ = two_apis
    async with connect(ws_url(a, "/events/987654/live")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404


@pytest.fixture(scope="module")
def slow_map_api() -> Iterator[ApiProcess]:
    """An API whose cached maps stay "fresh enough" for 5 s: snapshots lag the database."""
    api = ApiProcess(env={"CACHE_MAX_STALE_MS": "5000"})
    api.start()
    try:
        yield api
    finally:
        api.stop()


async def test_a_client_joining_from_a_stale_snapshot_misses_nothing(
    slow_map_api, event_and_buyer
) -> None:
    """The snapshot may be a cached map older than the last changes; the changes since it
    are replayed, so the seats the client ends up with are the database's."""
    api, (event_id, buyer) = slow_map_api, event_and_buyer
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get(f"/events/{event_id}/seats")).status_code == 200  # cached now
        for _ in range(3):
            held = await http.post(
                "/bookings/", json={"event_id": event_id, "quantity": 2}, headers=buyer.headers
            )
            assert held.status_code == 201
        stale = (await http.get(f"/events/{event_id}/seats")).json()["seats"]
        assert all(s["status"] == "available" for s in stale)  # the map lags, as allowed
        async with connect(ws_url(api, f"/events/{event_id}/live")) as ws:
            snapshot = await receive(ws)
            seats = {s["id"]: s["status"] for s in snapshot["seats"]}  # type: ignore[attr-defined]
            seq, holds = int(snapshot["seq"]), 0  # type: ignore[call-overload]
            while holds < 3:  # the three holds, after the snapshot or replayed
                change = await receive(ws)
                assert change["seq"] == seq + 1  # in order, no gap
                seq += 1
                if change["type"] == "seats":
                    holds += 1
                    for seat_id in change["seat_ids"]:  # type: ignore[attr-defined]
                        seats[seat_id] = str(change["status"])
    assert sum(1 for status in seats.values() if status == "held") == 6
    assert (change["available"], change["held"]) == (24, 6)
