"""The web seat picker in a real browser: Debian's chromium driven by Playwright against a
real uvicorn process (tests.servers.ApiProcess) on the test database and Redis.

As root, a missing chromium is installed with apt-get; otherwise these tests are skipped
and say what to run.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from app.models import Role
from app.services import qr
from tests import factories
from tests.conftest import record_figure
from tests.servers import ROOT, ApiProcess

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Predicates as functions: the page's CSP has no 'unsafe-eval' (a string would be eval()ed).
READY = "() => document.body.dataset.mapReady === 'true'"


def _install_chromium() -> str | None:
    """Debian's chromium, installed now if missing and we are root; None if we cannot."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    subprocess.run(install, check=True, env=env, timeout=900)
    return CHROMIUM if Path(CHROMIUM).exists() else None


@pytest.fixture(scope="session")
def chromium() -> str:
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' installs Playwright")
    found = _install_chromium()
    if found is None:
        pytest.skip(
            "chromium is not installed and installing it needs root: run "
            "`sudo apt-get install chromium` (Debian/Ubuntu), then `make test` again"
        )
    return found


@pytest.fixture(scope="module")
def web_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    log = tmp_path_factory.mktemp("web-api") / "api.log"
    api = ApiProcess(env={"RATE_LIMIT_ENABLED": "false"}, log_path=log)
    api.start()
    try:
        yield api
    finally:
        api.stop()
    assert api.server_errors() == []


@pytest.fixture(autouse=True)
async def ids_never_repeat(clean_state: None) -> None:
    """Start this test's ids past the last test's. The API process outlives `clean_state`'s
    truncation, and its per-process memory (app.core.memo) would otherwise take this test's
    user 1 or event 1 for the previous test's."""
    del clean_state
    from app.core.db import db

    start = next(_tests) * 1_000_000
    async with db.engine.begin() as conn:
        found = await conn.exec_driver_sql("SELECT sequencename FROM pg_sequences")
        for (name,) in found.all():
            await conn.exec_driver_sql(f"SELECT setval('{name}', {start})")


_tests = itertools.count(1)


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        yield launched
        await launched.close()


class Tab:
    """One browser context (a person) with the page open, and its console errors."""

    def __init__(self, page: Any, api: ApiProcess) -> None:
        self.page, self.api, self.errors = page, api, []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    async def open(self, path: str = "") -> None:
        await self.page.goto(f"{self.api.url}/{path}")

    async def log_in(self, account: factories.Account) -> None:
        form = self.page.locator("#login-form")
        await form.locator("input[name=email]").fill(account.email)
        await form.locator("input[name=password]").fill(factories.PASSWORD)
        await form.get_by_role("button", name="Log in").click()
        await self.page.locator("#who-email").get_by_text(account.email).wait_for()

    async def event(self, event_id: int) -> None:
        await self.page.goto(f"{self.api.url}/app/#/events/{event_id}")
        await self.page.wait_for_function(READY)

    def seat(self, name: str) -> Any:
        return self.page.locator(f'.seat[aria-label^="{name},"]')

    async def status_of(self, seat_id: int) -> str:
        return str(await self.seat_by_id(seat_id).get_attribute("data-status"))

    def seat_by_id(self, seat_id: int) -> Any:
        return self.page.locator(f'.seat[data-seat-id="{seat_id}"]')

    async def wait_status(self, seat_ids: list[int], status: str, timeout_ms: float) -> None:
        test = " && ".join(
            f"document.querySelector('.seat[data-seat-id=\"{i}\"]')?.dataset.status === '{status}'"
            for i in seat_ids
        )
        await self.page.wait_for_function(f"() => {test}", timeout=timeout_ms)

    def unexpected_errors(self, *expected_statuses: int) -> list[str]:
        """Console errors, less Chromium's own log line for an API answer the test asked
        for (a 409 it provoked is logged as "Failed to load resource ... 409")."""
        expected = tuple(f"status of {s} " for s in expected_statuses)
        return [e for e in self.errors if not any(x in e for x in expected)]


@pytest.fixture
async def tabs(browser: Any, web_api: ApiProcess) -> AsyncIterator[Any]:
    contexts = []

    async def open_tab(width: int = 1280, height: int = 900) -> Tab:
        context = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return Tab(await context.new_page(), web_api)

    yield open_tab
    for context in contexts:
        await context.close()


async def hall(sections: list[tuple[str, int, int, int]]) -> int:
    organizer = await factories.account(Role.ORGANIZER)
    return await factories.event(organizer, factories.seated_spec(sections, name="Web Hall"))


async def seat_ids(api: ApiProcess, event_id: int) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=api.url) as http:
        seats = (await http.get(f"/events/{event_id}/seats")).json()["seats"]
    return {f"{s['section']} row {s['row']} seat {s['number']}": s["id"] for s in seats}


class TestTwoBuyers:
    async def test_a_hold_and_a_sale_show_live_and_the_loser_gets_a_sentence(
        self, tabs, web_api: ApiProcess, tmp_path: Path
    ) -> None:
        event_id = await hall([("Orchestra", 6, 20, 8900), ("Balcony", 4, 20, 5900)])
        ids = await seat_ids(web_api, event_id)
        pair = ["Orchestra row 1 seat 5", "Orchestra row 1 seat 6"]
        a, b = await tabs(), await tabs()
        for tab in (a, b):
            await tab.open()
            await tab.log_in(await factories.account())
            await tab.event(event_id)
        for tab in (a, b):  # both pick the same two seats
            for name in pair:
                await tab.seat(name).click()
        async with a.page.expect_response(lambda r: r.url.endswith("/bookings/")) as held:
            await a.page.get_by_role("button", name="Hold seats").click()
        assert (await held.value).status == 201
        started = time.monotonic()
        await b.wait_status([ids[n] for n in pair], "held", timeout_ms=1000)  # live, no reload
        took = time.monotonic() - started
        record_figure(f"web: a hold shown in the other browser in {took * 1000:.0f} ms")
        await a.wait_status([ids[n] for n in pair], "mine", timeout_ms=1000)

        await a.page.get_by_role("button", name="Pay €178").click()
        await a.page.locator('.booking[data-status="confirmed"]').wait_for()
        await b.wait_status([ids[n] for n in pair], "sold", timeout_ms=1000)

        await b.page.get_by_role("button", name="Hold seats").click()
        message = b.page.locator("#message")
        await message.get_by_text("just taken by someone else").wait_for()
        assert (await message.text_content()) == (
            "Sorry, Orchestra row 1 seat 5 and Orchestra row 1 seat 6 were just taken by "
            "someone else (marked in red on the map). Please choose other seats."
        )
        for name in pair:
            assert await b.seat(name).get_attribute("data-taken") == "true"
        third = [ids[f"Balcony row 2 seat {n}"] for n in (8, 9, 10)]  # someone else's hold
        async with httpx.AsyncClient(base_url=web_api.url) as http:
            body = {"event_id": event_id, "seat_ids": third}
            buyer = await factories.account()
            assert (await http.post("/bookings/", json=body, headers=buyer.headers)).is_success
        await b.page.wait_for_function("() => document.body.dataset.liveSeq")
        await b.page.wait_for_function(
            "() => document.getElementById('counts').textContent.includes('3 held')"
        )
        await b.page.screenshot(path=tmp_path / "seat-map.png", full_page=True)
        if os.environ.get("EVENTLY_DOCS_SCREENSHOT"):  # refresh the README's picture
            shutil.copy(tmp_path / "seat-map.png", ROOT / "docs" / "seat-picker.png")
        assert (tmp_path / "seat-map.png").stat().st_size > 10_000
        assert a.unexpected_errors() == []
        assert b.unexpected_errors(409) == []


def verify_offline(
    keys: dict[str, Any], code: str, folder: Path
) -> subprocess.CompletedProcess[str]:
    """`python -m app.cli verify-ticket` with the published keys, as a door scanner runs it."""
    (folder / "keys.json").write_text(json.dumps(keys))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "verify-ticket",
            "--keys",
            str(folder / "keys.json"),
            code,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestPurchase:
    async def test_keyboard_only_purchase_ends_with_a_ticket_the_verifier_accepts(
        self, tabs, web_api: ApiProcess, tmp_path: Path
    ) -> None:
        event_id = await hall([("Balcony", 3, 10, 4500)])
        tab = await tabs()
        await tab.open()
        form = tab.page.locator("#login-form")  # a new customer, registered in the page
        await form.locator("input[name=email]").fill("web-buyer@example.com")
        await form.locator("input[name=password]").fill("a-long-password")
        await form.get_by_role("button", name="Create account").click()
        await tab.page.locator("#who-email").get_by_text("web-buyer@example.com").wait_for()
        await tab.event(event_id)

        keyboard = tab.page.keyboard
        await tab.page.get_by_role("link", name="All events").focus()
        await keyboard.press("Tab")  # the map is one Tab stop: its active seat
        focused = "() => document.activeElement.getAttribute('aria-label')"
        assert await tab.page.evaluate(focused) == "Balcony row 1 seat 1, €45, free"
        for key in ("ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight", "Enter"):
            await keyboard.press(key)
        for key in ("ArrowUp", "End", "Space"):
            await keyboard.press(key)
        assert await tab.page.evaluate(focused) == "Balcony row 2 seat 10, €45, free, selected"
        assert await tab.seat("Balcony row 2 seat 10").get_attribute("aria-pressed") == "true"
        selection = await tab.page.locator("#selection-text").text_content()
        assert selection == "2 seats: Balcony row 3 seat 3, Balcony row 2 seat 10 · €90"
        await keyboard.press("Tab")  # from the map to "Hold seats"
        await keyboard.press("Enter")
        pending = tab.page.locator('.booking[data-status="pending"]')
        await pending.wait_for()
        assert await pending.locator(".countdown").text_content() in ("10:00", "9:59", "9:58")

        await pending.get_by_label("Simulate a declined card").check()
        await pending.get_by_role("button", name="Pay €90").click()
        await tab.page.locator("#message").get_by_text("payment was declined").wait_for()
        await pending.get_by_role("button", name="Renew hold").click()
        await tab.page.locator("#message").get_by_text("Renewed").wait_for()
        pending = tab.page.locator('.booking[data-status="pending"]')
        await pending.get_by_role("button", name="Pay €90").click()
        ticket = tab.page.locator('.booking[data-status="confirmed"] figure.ticket').first
        await ticket.locator("img").wait_for()
        await tab.page.wait_for_function(
            "() => [...document.querySelectorAll('figure.ticket img')]"
            ".every((img) => img.complete && img.naturalWidth > 100)"
        )
        assert await tab.page.locator("figure.ticket").count() == 2
        code = str(await ticket.get_attribute("data-qr-code"))
        await tab.page.screenshot(path=tmp_path / "tickets.png", full_page=True)

        async with httpx.AsyncClient(base_url=web_api.url) as http:
            keys = (await http.get(f"/events/{event_id}/ticket-keys")).json()
            token = await tab.page.evaluate("() => sessionStorage.getItem('evently.token')")
            booking = (await http.get("/bookings/my-bookings", headers=bearer(token))).json()
            booking_id, first = booking["items"][0]["id"], booking["items"][0]["tickets"][0]
            url = f"/bookings/{booking_id}/tickets/{first['id']}/qr.svg"
            svg = await http.get(url, headers=bearer(token))
            stranger = await factories.account()
            refused = await http.get(url, headers=stranger.headers)
        assert first["qr_code_data"] == code
        # The SVG on screen encodes exactly that code: segno draws the same bytes again.
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.content == qr.svg(code, f"Ticket {first['code']}")
        assert refused.status_code == 404  # another customer's ticket does not exist
        checked = verify_offline(keys, code, tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("valid")

        await tab.page.get_by_role("button", name="Cancel booking").click()
        ids = await seat_ids(web_api, event_id)
        await tab.wait_status([ids["Balcony row 2 seat 10"]], "free", timeout_ms=2000)
        assert tab.unexpected_errors(402) == []


class TestLive:
    async def test_a_dropped_socket_shows_reconnecting_then_catches_up(
        self, tabs, web_api: ApiProcess, client: httpx.AsyncClient
    ) -> None:
        event_id = await hall([("Stalls", 2, 10, 3000)])
        ids = await seat_ids(web_api, event_id)
        tab = await tabs()
        await tab.event(event_id)
        state = tab.page.locator("#live-state")
        web_api.kill()  # the server crashes: the socket drops
        await tab.page.locator('#live-state[data-state="reconnecting"]').wait_for(timeout=5000)
        assert "Reconnecting" in str(await state.text_content())
        buyer = await factories.account()  # meanwhile, through another process: this one
        first = [ids["Stalls row 1 seat 1"], ids["Stalls row 1 seat 2"]]
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "seat_ids": first}, headers=buyer.headers
        )
        assert held.status_code == 201
        web_api.start()  # same port: the page comes back by itself
        await tab.page.locator('#live-state[data-state="live"]').wait_for(timeout=10_000)
        await tab.wait_status(first, "held", timeout_ms=2000)  # the new snapshot has it
        # Chromium logs each refused reconnection attempt; nothing else may appear.
        assert [e for e in tab.errors if "ERR_CONNECTION_REFUSED" not in e] == []

    async def test_the_client_applies_by_seq_and_resyncs_on_a_gap_or_new_epoch(
        self, tabs, web_api: ApiProcess
    ) -> None:
        """live.js on its own, against the real socket, with forged messages injected."""
        event_id = await hall([("Stalls", 2, 10, 3000)])
        ids = list((await seat_ids(web_api, event_id)).values())
        tab = await tabs()
        await tab.open("app/")
        await tab.page.evaluate(START_FEED, event_id)
        seen = "() => window.seen"
        await tab.page.wait_for_function("() => window.seen.snapshots === 1")
        epoch, seq = await tab.page.evaluate("() => [window.seen.last.epoch, window.seen.last.seq]")

        async def inject(message_epoch: int, message_seq: int) -> None:
            fake = {"type": "seats", "epoch": message_epoch, "seq": message_seq}
            fake |= {"seat_ids": ids[:1], "status": "booked", "available": 0, "held": 0}
            deliver = "(m) => window.feed.socket.onmessage({data: m})"
            await tab.page.evaluate(deliver, json.dumps(fake))

        await inject(epoch, seq)  # already in the snapshot: ignored, no resync
        assert (await tab.page.evaluate(seen))["resyncs"] == 0
        for forged in ((epoch, seq + 2), (epoch + 1, seq + 1)):  # a gap; another epoch
            await inject(*forged)
            await tab.page.wait_for_function(
                "(n) => window.feed.resyncs === n && window.seen.snapshots === n + 1",
                arg=forged[0] - epoch + 1,
            )
        async with httpx.AsyncClient(base_url=web_api.url) as http:  # a real change follows
            buyer = await factories.account()
            body = {"event_id": event_id, "seat_ids": ids[1:3]}
            assert (await http.post("/bookings/", json=body, headers=buyer.headers)).is_success
        await tab.page.wait_for_function("() => window.seen.changes.length === 1")
        result = await tab.page.evaluate(seen)
        assert result["changes"] == [seq + 1]  # only the real change, none of the forged
        assert result["states"] == ["connecting", "live", "resyncing", "live", "resyncing", "live"]
        assert tab.errors == []


class TestQueue:
    async def test_a_queued_sale_shows_the_line_then_holds_with_the_admission(
        self, tabs, web_api: ApiProcess
    ) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.seated_spec([("Pit", 1, 10, 2000)]))
        queue = {"queue": {"enabled": True, "admit_per_second": 50}}
        async with httpx.AsyncClient(base_url=web_api.url) as http:
            put = await http.put(f"/admin/events/{event_id}", json=queue, headers=organizer.headers)
        assert put.status_code == 200, put.text
        tab = await tabs()
        await tab.open()
        await tab.log_in(await factories.account())
        await tab.event(event_id)
        hold = tab.page.get_by_role("button", name="Hold seats")
        await tab.seat("Pit row 1 seat 4").click()
        assert await hold.is_disabled()  # not before the line lets us in
        async with tab.page.expect_response(lambda r: r.url.endswith("/queue")) as joined:
            await tab.page.get_by_role("button", name="Join the line").click()
        assert (await joined.value).status == 200
        await tab.page.locator("#queue-text").get_by_text("You're in!").wait_for(timeout=5000)
        async with tab.page.expect_request(lambda r: r.url.endswith("/bookings/")) as sent:
            await hold.click()
        assert (await sent.value).headers["admission-token"].startswith("WRA1.")
        await tab.page.locator('.booking[data-status="pending"]').wait_for()
        assert tab.errors == []


class TestOrganizer:
    async def test_an_organizer_checks_a_ticket_in_twice_and_downloads_the_attendees(
        self, tabs, web_api: ApiProcess
    ) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.seated_spec([("Pit", 1, 10, 2000)]))
        ids = await seat_ids(web_api, event_id)
        buyer = await factories.account()
        async with httpx.AsyncClient(base_url=web_api.url, headers=buyer.headers) as http:
            body = {"event_id": event_id, "seat_ids": [ids["Pit row 1 seat 3"]]}
            held = await http.post("/bookings/", json=body)
            assert held.status_code == 201, held.text
            paid = await http.post(f"/bookings/{held.json()['id']}/confirm", json={})
            assert paid.status_code == 200, paid.text
        code = paid.json()["tickets"][0]["code"]
        tab = await tabs()
        await tab.open()
        await tab.log_in(organizer)
        mine = tab.page.locator(f'#my-events li[data-event-id="{event_id}"]')
        await mine.get_by_text("0 held · 1 sold").wait_for()  # the live counts
        assert str(await mine.text_content()).startswith("Test Concert · published · ")
        assert (
            await mine.get_by_role("link", name="Open live seat map").get_attribute("href")
            == f"#/events/{event_id}"
        )

        box = tab.page.get_by_label("Ticket code or QR payload")
        result = tab.page.locator("#checkin-result")
        await box.fill(code.lower())  # as typed at the door
        await tab.page.get_by_role("button", name="Check in", exact=True).click()
        await result.get_by_text("Admitted").wait_for()
        admitted = str(await result.text_content())
        expected = f"Admitted: seat Pit-1-3, holder {buyer.email}, ticket {code}, at "
        assert admitted.startswith(expected)
        await box.fill(code)
        await tab.page.get_by_role("button", name="Check in", exact=True).click()
        await result.get_by_text("Already checked in at").wait_for()

        async with tab.page.expect_download() as saving:
            await mine.get_by_role("button", name="Download attendees (CSV)").click()
        download = await saving.value
        assert download.suggested_filename == f"event-{event_id}-attendees.csv"
        csv = await anyio.Path(await download.path()).read_text(encoding="utf-8-sig")
        row = next(line for line in csv.splitlines() if code in line)
        assert buyer.email in row
        assert ",checked_in," in row
        assert tab.unexpected_errors(409) == []


class TestStadium:
    async def test_20000_seats_paint_and_apply_live_changes_quickly(
        self, tabs, web_api: ApiProcess, tmp_path: Path
    ) -> None:
        sections = [(name, 50, 100, price) for name, price in STADIUM]  # 4 x 50 x 100
        event_id = await hall(sections)
        tab = await tabs(width=1400, height=1000)
        await tab.page.goto(f"{web_api.url}/app/#/events/{event_id}")
        await tab.page.wait_for_function(READY, timeout=30_000)
        perf = await tab.page.evaluate("() => window.eventlyPerf")
        buyer = await factories.account()
        async with httpx.AsyncClient(base_url=web_api.url) as http:
            shown = []
            for _ in range(HOLDS):
                body = {"event_id": event_id, "quantity": 1}  # at most 10 per buyer
                held = await http.post("/bookings/", json=body, headers=buyer.headers)
                assert held.status_code == 201, held.text
                started = time.monotonic()
                await tab.page.wait_for_function(
                    "(n) => window.eventlyPerf.live.length >= n", arg=len(shown) + 1
                )
                shown.append(time.monotonic() - started)
        live = (await tab.page.evaluate("() => window.eventlyPerf.live"))[:HOLDS]
        apply_ms = sorted(m["applyMs"] for m in live)
        frame_ms = sorted(m["frameMs"] for m in live)
        await tab.page.locator("#map").screenshot(path=tmp_path / "stadium.png")
        middle = HOLDS // 2
        record_figure(
            f"web, 20,000 seats: first paint {perf['firstPaintMs']:.0f} ms after navigation "
            f"(snapshot in at {perf['dataMs']:.0f} ms, drawn in {perf['drawMs']:.0f} ms); "
            f"live change applied in {apply_ms[middle]:.2f} ms median, {apply_ms[-1]:.2f} ms "
            f"max, on screen (next frame) {frame_ms[middle]:.1f} ms median; "
            f"hold answered -> painted {sorted(shown)[middle] * 1000:.0f} ms median"
        )
        # Generous bounds only: a shared two-core machine; the figures go to PERFORMANCE.md.
        assert perf["firstPaintMs"] < 15_000
        assert apply_ms[-1] < 100
        assert max(shown) < 2
        await tab.page.locator(".seat[tabindex='0']").focus()  # still a working control
        await tab.page.keyboard.press("PageDown")
        focused = "() => document.activeElement.getAttribute('aria-label')"
        assert str(await tab.page.evaluate(focused)).startswith("Side B row 1 seat 1, €60")
        assert tab.errors == []


STADIUM = [("Side A", 9000), ("Side B", 6000), ("End C", 4500), ("End D", 3000)]
HOLDS = 9


START_FEED = """async (eventId) => {
  const { LiveFeed } = await import("/app/js/live.js");
  const seen = (window.seen = { snapshots: 0, changes: [], states: [], resyncs: 0 });
  window.feed = new LiveFeed(eventId, {
    onSnapshot: (m) => { seen.snapshots += 1; seen.last = m; seen.resyncs = window.feed.resyncs; },
    onChange: (m) => seen.changes.push(m.seq),
    onState: (s) => seen.states.push(s),
  });
  window.feed.connect();
}"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
