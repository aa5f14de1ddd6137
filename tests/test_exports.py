"""CSV exports: the attendee list (rows, filters, access, formula escaping, streaming) and
the analytics summary as a table."""

import asyncio
import csv
import io
import itertools
import re
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from app.core.db import db
from app.crud import exports as exports_crud
from app.models import Role
from app.schemas.exports import ATTENDEE_COLUMNS, SUMMARY_COLUMNS
from app.services import exports as exports_service
from app.services.exports import PAGE_BOOKINGS
from tests import factories
from tests.conftest import record_figure


def rows_of(body: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(body, newline=""))
    assert tuple(reader.fieldnames or ()) == ATTENDEE_COLUMNS
    return list(reader)


async def sql(statement: str, **params: object) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(statement), params)


async def buy(
    client, buyer, event_id: int, quantity: int, section: str | None = None
) -> dict[str, Any]:
    body = {"event_id": event_id, "quantity": quantity}
    held = await client.post(
        "/bookings/", json=body | ({"section": section} if section else {}), headers=buyer.headers
    )
    assert held.status_code == 201, held.text
    confirmed = await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    assert confirmed.status_code == 200, confirmed.text
    return dict(confirmed.json())


async def named(full_name: str) -> factories.Account:
    buyer = await factories.account()
    await sql("UPDATE users SET full_name = :n WHERE id = :i", n=full_name, i=buyer.id)
    return buyer


class TestAttendees:
    @pytest.fixture
    async def sale(self, client, organizer) -> dict[str, Any]:
        """Stalls at 50.00, Balcony at 20.00: Ada's two tickets (one scanned), Bob's one
        (cancelled after paying), and Cy's pending hold (no ticket)."""
        spec = factories.seated_spec([("Stalls", 1, 10, 5000), ("Balcony", 1, 10, 2000)])
        event_id = await factories.event(organizer, spec)
        ada, bob, cy = await named("Ada Lovelace"), await named("Bob"), await named("Cy")
        kept = await buy(client, ada, event_id, 2, "Stalls")
        lost = await buy(client, bob, event_id, 1, "Balcony")
        scan = await client.post(
            "/admin/checkin", json={"code": kept["tickets"][0]["code"]}, headers=organizer.headers
        )
        assert scan.status_code == 200, scan.text
        cancel = await client.post(f"/bookings/{lost['id']}/cancel", headers=bob.headers)
        assert cancel.status_code == 200, cancel.text
        pending = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=cy.headers
        )
        assert pending.status_code == 201
        return {
            "event_id": event_id,
            "kept": kept,
            "lost": lost,
            "scanned_at": scan.json()["checked_in_at"],
            "buyers": (ada, bob),
        }

    async def export(self, client, account, event_id: int, query: str = "") -> Any:
        return await client.get(
            f"/admin/events/{event_id}/attendees.csv{query}", headers=account.headers
        )

    async def test_one_row_per_ticket_with_every_column(self, client, organizer, sale) -> None:
        response = await self.export(client, organizer, sale["event_id"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="event-{sale["event_id"]}-attendees.csv"'
        )
        assert response.headers["cache-control"] == "no-store"
        ada, bob = sale["buyers"]
        kept, lost = sale["kept"], sale["lost"]
        seats = {s["id"]: s["label"] for b in (kept, lost) for s in b["seats"]}

        def expected(booking, ticket, buyer, section, price, state) -> dict[str, str]:
            return {
                "ticket_code": ticket["code"],
                "seat_label": seats[ticket["seat_id"]],
                "section": section,
                "price": price,
                "buyer_email": buyer.email,
                "buyer_name": "Ada Lovelace" if buyer is ada else "Bob",
                "booking_id": str(booking["id"]),
                "booking_status": "cancelled" if booking is lost else "confirmed",
                "ticket_status": state,
            }

        first, second = kept["tickets"]
        want = [
            expected(kept, first, ada, "Stalls", "50.00", "checked_in"),
            expected(kept, second, ada, "Stalls", "50.00", "valid"),
            expected(lost, lost["tickets"][0], bob, "Balcony", "20.00", "cancelled"),
        ]
        rows = rows_of(response.text)
        times = [(r.pop("checked_in_at"), r.pop("issued_at")) for r in rows]
        assert rows == want
        scanned = datetime.fromisoformat(sale["scanned_at"]).astimezone(UTC)
        assert times[0][0] == scanned.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert [t[0] for t in times[1:]] == ["", ""]
        for _, issued in times:  # ISO 8601 UTC, to the second, within the test's minute
            moment = datetime.strptime(issued, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            assert abs((datetime.now(UTC) - moment).total_seconds()) < 120

    async def test_status_filter(self, client, organizer, sale) -> None:
        states = {
            "confirmed": ["checked_in", "valid"],
            "valid": ["valid"],
            "checked_in": ["checked_in"],
            "cancelled": ["cancelled"],
        }
        for status, wanted in states.items():
            response = await self.export(client, organizer, sale["event_id"], f"?status={status}")
            assert response.status_code == 200, response.text
            assert [r["ticket_status"] for r in rows_of(response.text)] == wanted, status

    async def test_unknown_filter_is_422(self, client, organizer, sale) -> None:
        response = await self.export(client, organizer, sale["event_id"], "?status=paid")
        assert response.status_code == 422

    async def test_only_the_organizer_and_admins(self, client, organizer, sale) -> None:
        event_id = sale["event_id"]
        rival = await factories.account(Role.ORGANIZER)
        admin = await factories.account(Role.ADMIN)
        ada, _ = sale["buyers"]
        assert (await self.export(client, rival, event_id)).status_code == 404
        assert (await self.export(client, organizer, 999_999)).status_code == 404
        assert (await self.export(client, ada, event_id)).status_code == 403
        assert (await client.get(f"/admin/events/{event_id}/attendees.csv")).status_code == 401
        by_admin = await self.export(client, admin, event_id)
        assert by_admin.status_code == 200
        assert len(rows_of(by_admin.text)) == 3

    async def test_formula_cells_are_escaped(self, client, organizer) -> None:
        spec = factories.seated_spec([("Stalls", 1, 10, 5000)])
        event_id = await factories.event(organizer, spec)
        await sql(
            "UPDATE seats SET section = '@SUM(A1:A9)', label = '=' || label WHERE event_id = :e",
            e=event_id,
        )
        names = ['=HYPERLINK("http://evil.test","x")', "+1+2", "-3+4", "\tTab", "Plain, Name"]
        for name in names:
            await buy(client, await named(name), event_id, 1, "@SUM(A1:A9)")
        await sql("UPDATE users SET email = '-' || email WHERE full_name = 'Plain, Name'")
        rows = rows_of((await self.export(client, organizer, event_id)).text)
        assert [r["buyer_name"] for r in rows] == [
            '\'=HYPERLINK("http://evil.test","x")',
            "'+1+2",
            "'-3+4",
            "'\tTab",
            "Plain, Name",
        ]
        assert {r["section"] for r in rows} == {"'@SUM(A1:A9)"}
        assert all(r["seat_label"].startswith("'=Stalls-") for r in rows), rows
        assert rows[-1]["buyer_email"].startswith("'-customer")
        assert rows[0]["ticket_code"][0] not in "'=+-@"  # only what could be a formula


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def call_asgi(app: Any, path: str, headers: dict[str, str], send: Send) -> None:
    """One GET straight through the ASGI app, the response handed to `send` message by
    message (httpx's ASGITransport gathers the whole body before returning it)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("evently.test", 80),
    }

    requested, finished = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # the client stays connected until the response ends
        return {"type": "http.disconnect"}

    async def send_until_done(message: dict[str, Any]) -> None:
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send_until_done)


TICKETS = 50_000
CODE = re.compile(rb"^(T\d{8}),", re.MULTILINE)


async def big_event(organizer: factories.Account) -> int:
    """An event with 50,000 seats sold as tickets in 5,000 confirmed bookings, in SQL."""
    event_id = await factories.event(organizer, factories.ga_spec(capacity=1))
    buyer = await named("Many Tickets")
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO seats (event_id, section, row, number, label, price_cents, status) "
                "SELECT :e, 'Floor', 'F', n, 'F-' || n, 2500, 'booked' "
                "FROM generate_series(1, :n) AS n"
            ),
            {"e": event_id, "n": TICKETS},
        )
        await conn.execute(
            text(
                "INSERT INTO bookings (user_id, event_id, status, total_cents, source) "
                "SELECT :u, :e, 'confirmed', 25000, 'direct' FROM generate_series(1, :n)"
            ),
            {"u": buyer.id, "e": event_id, "n": TICKETS // 10},
        )
        await conn.execute(
            text(
                "WITH b AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
                "  FROM bookings WHERE event_id = :e), "
                "s AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
                "  FROM seats WHERE event_id = :e AND label LIKE 'F-%') "
                "INSERT INTO tickets (booking_id, seat_id, code, qr_code_data) "
                "SELECT b.id, s.id, 'T' || lpad(s.n::text, 8, '0'), 'x' "
                "FROM s JOIN b ON b.n = s.n / 10 ORDER BY s.n"
            ),
            {"e": event_id},
        )
    return event_id


class TestStreaming:
    async def test_50000_tickets_stream_in_pages_without_holding_a_connection(
        self, app_instance, organizer
    ) -> None:
        event_id = await big_event(organizer)
        pool: Any = db.engine.pool
        seen: dict[str, Any] = {"chunks": 0, "bytes": 0, "rows": 0, "last": b"", "held": 0}

        async def slow_client(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                return
            body: bytes = message.get("body", b"")
            if not body:
                return
            seen["chunks"] += 1
            seen["bytes"] += len(body)
            seen["held"] = max(seen["held"], pool.checkedout())
            assert body.endswith(b"\r\n")  # a chunk is whole rows
            # Codes in strictly increasing order across the whole file: none twice.
            codes = [seen["last"], *CODE.findall(body)]
            assert all(a < b for a, b in itertools.pairwise(codes))
            seen["last"] = codes[-1]
            seen["rows"] += len(codes) - 1
            if seen["chunks"] == 1:  # the header, before any page is read
                seen["base"] = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            if seen["chunks"] == 3:  # a reader that stalls: nothing is read meanwhile
                await _stall_and_check(pool, seen)

        tracemalloc.start()
        started = time.perf_counter()
        try:
            await call_asgi(
                app_instance,
                f"/admin/events/{event_id}/attendees.csv",
                organizer.headers,
                slow_client,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - started
        assert seen["status"] == 200
        assert seen["rows"] == TICKETS
        assert seen["last"] == f"T{TICKETS - 1:08d}".encode()
        # A header, then one chunk per page of bookings (10 tickets each).
        assert seen["chunks"] == 1 + TICKETS // 10 // PAGE_BOOKINGS
        assert seen["held"] == 0  # no pooled connection out while the client has a chunk
        # Memory allocated beyond what was live when the stream began: about one page
        # (1.4 MB alone; other tasks of the test process add to it), never the file
        # (building it took 48 MB here: the text and every row at once).
        grown = peak - seen["base"]
        assert grown < seen["bytes"], (grown, seen["bytes"])
        record_figure(
            f"attendees.csv, {TICKETS} tickets: {seen['bytes'] / 1e6:.1f} MB in "
            f"{seen['chunks']} chunks in {elapsed:.1f} s under tracemalloc, which saw "
            f"{grown / 1e6:.2f} MB at most allocated beyond the start"
        )

    async def test_a_failure_mid_stream_never_ends_the_file_cleanly(
        self, app_instance, client, organizer, monkeypatch
    ) -> None:
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        for _ in range(3):
            await buy(client, await factories.account(), event_id, 1)
        calls = 0
        real = exports_crud.attendees_of

        async def failing(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("the database went away")
            return await real(*args)

        monkeypatch.setattr(exports_service, "PAGE_BOOKINGS", 1)
        monkeypatch.setattr(exports_crud, "attendees_of", failing)
        bodies: list[dict[str, Any]] = []

        async def client_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                bodies.append(message)

        path = f"/admin/events/{event_id}/attendees.csv"
        with pytest.raises(RuntimeError, match="went away"):
            await call_asgi(app_instance, path, organizer.headers, client_send)
        assert [m["body"].count(b"\r\n") for m in bodies] == [1, 1]  # header, first booking
        assert all(m.get("more_body") for m in bodies)  # no end of body: the client sees a break


async def _stall_and_check(pool: Any, seen: dict[str, Any]) -> None:
    before = seen["rows"]
    await asyncio.sleep(0.3)
    assert pool.checkedout() == 0
    assert seen["rows"] == before


class TestSummaryCsv:
    async def test_the_tables_hold_the_json_summary(self, client, organizer) -> None:
        a = await factories.event(organizer, factories.ga_spec(10, 1000, name="=Alpha"))
        b = await factories.event(organizer, factories.ga_spec(4, 2500, name="Beta"))
        buyer = await factories.account()
        held = await client.post(
            "/bookings/", json={"event_id": a, "quantity": 3}, headers=buyer.headers
        )
        await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
        summary = (await client.get("/admin/analytics/summary", headers=organizer.headers)).json()

        async def table(by: str) -> list[list[str]]:
            response = await client.get(
                f"/admin/analytics/summary.csv?by={by}", headers=organizer.headers
            )
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "text/csv; charset=utf-8"
            assert (
                f'filename="analytics-summary-{by}.csv"' in response.headers["content-disposition"]
            )
            return list(csv.reader(io.StringIO(response.text, newline="")))

        assert await table("event") == [
            list(SUMMARY_COLUMNS),
            [str(a), "'=Alpha", "10", "3", "0.3", "30.00", "0", "1"],
            [str(b), "Beta", "4", "0", "0.0", "0.00", "0", "2"],
        ]
        today = summary["bookings_per_day"][0]["day"]
        assert await table("day") == [["day", "bookings", "confirmed"], [today, "1", "1"]]
        metrics = dict(await table("metric"))
        assert metrics["bookings_confirmed"] == "1"
        assert metrics["revenue"] == "30.00"
        assert metrics["cancellation_rate"] == str(summary["cancellation_rate"])
        assert (metrics["events"], metrics["seats_sold"]) == ("2", "3")
        customer = await factories.account()
        denied = await client.get("/admin/analytics/summary.csv", headers=customer.headers)
        assert denied.status_code == 403


async def test_openapi_declares_the_csv_routes(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    attendees = paths["/admin/events/{event_id}/attendees.csv"]["get"]
    assert "text/csv" in attendees["responses"]["200"]["content"]
    params = {p["name"]: p["in"] for p in attendees["parameters"]}
    assert params == {"event_id": "path", "status": "query"}
    summary = paths["/admin/analytics/summary.csv"]["get"]
    assert "text/csv" in summary["responses"]["200"]["content"]
