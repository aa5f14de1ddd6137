"""A model of the booking protocol, run step by step against the real app (DESIGN §4).

Hypothesis drives three customers through holds (chosen seats, any N, a section), confirms
(paid and declined), cancels, time moving past a hold (its expiry set in the past in the
database), the worker's sweeper, and the waitlist (join, leave, offers, confirming an
offer), on a small seated event and a small general-admission one. A plain Python model
says what each answer must be and what the database must then hold; after every step the
database is compared with the model, every invariant of `tests.invariants` is checked, and
the public counts and seat maps are compared with what a buyer should see.

Hypothesis state machines are synchronous: each machine runs the app on an event loop of
its own, and the app's engine and Redis clients are closed with that loop.
"""

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from app.core import memo
from app.core.config import get_settings
from app.core.db import db
from app.core.redis import redis
from app.infra import cache
from app.infra.waiting_room import guard as waiting_room_redis
from app.main import app
from app.models import Role
from app.worker.tasks import expire_all_due
from tests import factories
from tests.faults import scale
from tests.invariants import violations

T = TypeVar("T")

CAP = 4  # seats per user and event: small, so that the cap is reached
USERS = 3
SEATED = [("A", 1, 4, 5000), ("B", 1, 3, 8000)]  # 7 seats in two sections
GA_CAPACITY = 3
TOKENS = (None, "tok_visa", "fail")  # "fail": the simulated payment declines
LIVE = ("pending", "confirmed")


@dataclass
class Booking:
    id: int
    user: int  # index of the customer
    event: int
    seats: tuple[int, ...]
    source: str = "direct"
    status: str = "pending"
    lapsed: bool = False  # its expiry has passed (the sweeper may not have run yet)
    ticketed: bool = False


@dataclass
class Entry:
    id: int
    user: int
    event: int
    quantity: int
    status: str = "waiting"
    booking: int | None = None


@dataclass
class Model:
    """Who should own what: the protocol of DESIGN §4 in plain Python."""

    seats: dict[int, list[int]]  # event -> its seat ids, in id order
    section: dict[int, str]
    price: dict[int, int]
    owner: dict[int, int | None]  # seat -> the live booking claiming it
    bookings: dict[int, Booking] = field(default_factory=dict)
    entries: dict[int, Entry] = field(default_factory=dict)  # in FIFO order
    offers: list[tuple[Entry, tuple[int, ...]]] = field(default_factory=list)

    def waiting(self, event: int) -> list[Entry]:
        return [e for e in self.entries.values() if e.event == event and e.status == "waiting"]

    def free(self, seat: int, event: int) -> bool:
        """Free to a buyer: nobody's, or a lapsed hold while nobody waits for the event."""
        owner = self.owner[seat]
        return owner is None or (self.bookings[owner].lapsed and not self.waiting(event))

    def free_seats(self, event: int, section: str | None = None) -> list[int]:
        return [
            s
            for s in self.seats[event]
            if self.free(s, event) and section in (None, self.section[s])
        ]

    def claimed(self, user: int, event: int) -> int:
        """Seats the user holds (unexpired) or has bought there: what the cap counts."""
        return sum(
            len(b.seats)
            for b in self.bookings.values()
            if b.user == user
            and b.event == event
            and (b.status == "confirmed" or (b.status == "pending" and not b.lapsed))
        )

    def active_entry(self, user: int, event: int) -> Entry | None:
        return next(
            (
                e
                for e in self.entries.values()
                if (e.user, e.event) == (user, event) and e.status in ("waiting", "offered")
            ),
            None,
        )

    def buyer_status(self, seat: int, event: int) -> str:
        if self.free(seat, event):
            return "available"
        owner = self.owner[seat]
        assert owner is not None
        return "held" if self.bookings[owner].status == "pending" else "booked"

    def stored(self, seat: int) -> tuple[str, int | None]:
        owner = self.owner[seat]
        if owner is None:
            return "available", None
        return ("held" if self.bookings[owner].status == "pending" else "booked"), owner

    # -- transitions ---------------------------------------------------------------------

    def hold(self, booking: Booking) -> None:
        """A new hold; lapsed holds it took seats from have expired, their other seats freed."""
        outlived = {self.owner[s] for s in booking.seats} - {None}
        self.bookings[booking.id] = booking
        for seat in booking.seats:
            self.owner[seat] = booking.id
        for old in sorted(b for b in outlived if b is not None):
            self._end(self.bookings[old], "expired", "expired")
            for seat in self._claims_of(old):
                self.owner[seat] = None

    def confirm(self, booking: Booking) -> None:
        booking.status, booking.ticketed = "confirmed", True
        self._close_offer(booking, "fulfilled")

    def cancel(self, booking: Booking) -> None:
        self._end(booking, "cancelled", "left")
        self.pass_on(booking.event, self._claims_of(booking.id))

    def sweep(self) -> None:
        """The sweeper: lapsed pending bookings expire, their seats go to the waitlist first."""
        freed: dict[int, list[int]] = defaultdict(list)
        for booking in [b for b in self.bookings.values() if b.status == "pending" and b.lapsed]:
            self._end(booking, "expired", "expired")
            freed[booking.event] += self._claims_of(booking.id)
        for event in sorted(freed):
            self.pass_on(event, sorted(freed[event]))

    def pass_on(self, event: int, freed: list[int]) -> None:
        """Freed seats (and available ones) to waiting entries, FIFO among those that fit."""
        for seat in freed:
            self.owner[seat] = None
        entries = self.waiting(event)
        wanted = sum(e.quantity for e in entries)
        others = [s for s in self.seats[event] if self.owner[s] is None and s not in freed]
        pool = [*freed, *others[:wanted]] if entries else []
        for entry in entries:
            if entry.quantity > len(pool):
                continue
            given, pool = tuple(pool[: entry.quantity]), pool[entry.quantity :]
            entry.status = "offered"
            self.offers.append((entry, given))
            for seat in given:
                self.owner[seat] = -entry.id  # the offer's booking, until its id is known

    def adopt_offer(self, entry: Entry, seats: tuple[int, ...], booking_id: int) -> None:
        entry.booking = booking_id
        self.bookings[booking_id] = Booking(
            booking_id, entry.user, entry.event, tuple(sorted(seats)), source="waitlist"
        )
        for seat in seats:
            self.owner[seat] = booking_id

    def _claims_of(self, booking_id: int) -> list[int]:
        return [s for s in self.bookings[booking_id].seats if self.owner[s] == booking_id]

    def _end(self, booking: Booking, status: str, offer_status: str) -> None:
        booking.status = status
        self._close_offer(booking, offer_status)

    def _close_offer(self, booking: Booking, status: str) -> None:
        for entry in self.entries.values():
            if entry.booking == booking.id and entry.status == "offered":
                entry.status = status


# -- reading the database --------------------------------------------------------------

STATE_QUERIES = {
    "bookings": "SELECT id, user_id, event_id, status::text, source::text,"
    " status = 'pending' AND expires_at < now() FROM bookings",
    "claims": "SELECT booking_id, seat_id, active FROM booking_seats ORDER BY seat_id",
    "seats": "SELECT id, status::text, booking_id FROM seats",
    "tickets": "SELECT booking_id, seat_id FROM tickets ORDER BY seat_id",
    "entries": "SELECT id, user_id, event_id, quantity, status::text, offered_booking_id"
    " FROM waitlist_entries",
}


async def _database() -> tuple[list[str], dict[str, list[Any]]]:
    """The invariants broken (if any), and the rows the model is compared with."""
    async with db.engine.connect() as conn:
        found = await violations(conn, CAP)
        state = {k: list((await conn.execute(text(q))).all()) for k, q in STATE_QUERIES.items()}
    return found, state


World = tuple[list[factories.Account], list[int], list[Any]]
# The customers and events, created by the first example of a run; each example after it
# starts from them with every booking, ticket, entry and job deleted and every seat free.
WORLD: World | None = None
RESET = (
    *(f"DELETE FROM {t}" for t in ("tickets", "booking_seats", "waitlist_entries", "bookings")),
    *(f"DELETE FROM {t}" for t in ("idempotency_keys", "notifications", "outbox")),
    "UPDATE seats SET status = 'available', booking_id = NULL, held_until = NULL",
)


async def _create_world() -> World:
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(factories.TRUNCATE_ALL)
    memo.forget_all()
    organizer = await factories.account(Role.ORGANIZER)
    customers = [await factories.account() for _ in range(USERS)]
    seated = await factories.event(organizer, factories.seated_spec(SEATED))
    ga = await factories.event(organizer, factories.ga_spec(GA_CAPACITY))
    async with db.engine.connect() as conn:
        query = text("SELECT id, event_id, section, price_cents FROM seats")
        rows = list((await conn.execute(query)).all())
    return customers, [seated, ga], rows


class BookingMachine(RuleBasedStateMachine):
    """Customers 0..2 against one seated event and one general-admission event."""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://evently.test"
        )
        try:
            self.run(self._set_up())
        except BaseException:
            self.teardown()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        async def close() -> None:
            await self.client.aclose()
            await redis.close()
            await waiting_room_redis.close()
            await db.dispose()

        try:
            self.run(close())
        finally:
            self.runner.close()

    async def _set_up(self) -> None:
        global WORLD
        if WORLD is None:
            WORLD = await _create_world()
        else:
            async with db.engine.begin() as conn:
                for statement in RESET:
                    await conn.exec_driver_sql(statement)
        await redis.client.flushdb()
        self.customers, self.events, rows = WORLD
        seats: dict[int, list[int]] = {event: [] for event in self.events}
        for seat_id, event_id, _, _ in sorted(rows):
            seats[event_id].append(seat_id)
        self.model = Model(
            seats=seats,
            section={r[0]: r[2] for r in rows},
            price={r[0]: r[3] for r in rows},
            owner={r[0]: None for r in rows},
        )

    # -- helpers -------------------------------------------------------------------------

    def headers(self, user: int) -> dict[str, str]:
        return self.customers[user].headers

    def user_of(self, account_id: int) -> int:
        return next(i for i, c in enumerate(self.customers) if c.id == account_id)

    async def _adopt_offers(self) -> None:
        """The model predicted offers (entry, seats); the database names their bookings."""
        offers, self.model.offers = self.model.offers, []
        async with db.engine.connect() as conn:
            for entry, seats in offers:
                booking_id = await conn.scalar(
                    text("SELECT offered_booking_id FROM waitlist_entries WHERE id = :i"),
                    {"i": entry.id},
                )
                assert booking_id is not None, f"entry {entry.id} should have been offered {seats}"
                self.model.adopt_offer(entry, seats, booking_id)

    # -- holds ---------------------------------------------------------------------------

    @rule(data=st.data(), user=st.integers(0, USERS - 1))
    def hold_chosen_seats(self, data: st.DataObject, user: int) -> None:
        event = data.draw(st.sampled_from(self.events), label="event")
        other = next(e for e in self.events if e != event)
        pickable = [*self.model.seats[event], self.model.seats[other][0]]  # one foreign seat
        seat_ids = data.draw(
            st.lists(st.sampled_from(pickable), min_size=1, max_size=3, unique=True),
            label="seat_ids",
        )
        self.run(self._hold_chosen(user, event, seat_ids))

    async def _hold_chosen(self, user: int, event: int, seat_ids: list[int]) -> None:
        model = self.model
        mine = set(model.seats[event])
        taken = sorted(s for s in seat_ids if s not in mine or not model.free(s, event))
        r = await self.client.post(
            "/bookings/", json={"event_id": event, "seat_ids": seat_ids}, headers=self.headers(user)
        )
        if taken:
            assert (r.status_code, r.json().get("code")) == (409, "seats_unavailable"), r.text
            assert r.json()["seat_ids"] == taken, r.text
            return
        if model.claimed(user, event) + len(seat_ids) > CAP:
            assert (r.status_code, r.json().get("code")) == (409, "seat_limit_exceeded"), r.text
            return
        assert r.status_code == 201, r.text
        assert sorted(s["id"] for s in r.json()["seats"]) == sorted(seat_ids)
        self._held(user, event, r.json())

    @rule(data=st.data(), user=st.integers(0, USERS - 1), quantity=st.integers(1, 3))
    def hold_any_seats(self, data: st.DataObject, user: int, quantity: int) -> None:
        event = data.draw(st.sampled_from(self.events), label="event")
        sections = sorted({self.model.section[s] for s in self.model.seats[event]})
        section = data.draw(st.sampled_from([None, *sections]), label="section")
        self.run(self._hold_any(user, event, quantity, section))

    async def _hold_any(self, user: int, event: int, quantity: int, section: str | None) -> None:
        free = self.model.free_seats(event, section)
        body: dict[str, Any] = {"event_id": event, "quantity": quantity}
        if section is not None:
            body["section"] = section
        r = await self.client.post("/bookings/", json=body, headers=self.headers(user))
        if len(free) < quantity:
            assert (r.status_code, r.json().get("code")) == (409, "not_enough_seats"), r.text
            assert r.json()["available"] == len(free), r.text
            return
        if self.model.claimed(user, event) + quantity > CAP:
            assert (r.status_code, r.json().get("code")) == (409, "seat_limit_exceeded"), r.text
            return
        assert r.status_code == 201, r.text
        got = [s["id"] for s in r.json()["seats"]]
        assert len(got) == quantity, r.text
        assert set(got) <= set(free), (got, free)
        self._held(user, event, r.json())

    def _held(self, user: int, event: int, body: dict[str, Any]) -> None:
        seats = tuple(sorted(s["id"] for s in body["seats"]))
        assert (body["status"], body["source"], body["event_id"]) == ("pending", "direct", event)
        assert body["user_id"] == self.customers[user].id
        assert body["total_cents"] == sum(self.model.price[s] for s in seats)
        assert body["tickets"] == []
        self.model.hold(Booking(body["id"], user, event, seats))

    # -- confirm and cancel --------------------------------------------------------------

    def _bookings(self, source: str | None = None) -> list[int]:
        return sorted(b.id for b in self.model.bookings.values() if source in (None, b.source))

    def _pending_offers(self) -> list[int]:
        return sorted(
            b.id
            for b in self.model.bookings.values()
            if b.source == "waitlist" and b.status == "pending"
        )

    @precondition(lambda self: self.model.bookings)
    @rule(data=st.data(), token=st.sampled_from(TOKENS), stranger=st.booleans())
    def confirm(self, data: st.DataObject, token: str | None, stranger: bool) -> None:
        booking = self.model.bookings[data.draw(st.sampled_from(self._bookings()), label="id")]
        actor = (booking.user + 1) % USERS if stranger else booking.user
        self.run(self._confirm(booking, actor, token))

    @precondition(lambda self: self._pending_offers())
    @rule(data=st.data(), token=st.sampled_from(TOKENS))
    def confirm_offer(self, data: st.DataObject, token: str | None) -> None:
        booking = self.model.bookings[data.draw(st.sampled_from(self._pending_offers()))]
        self.run(self._confirm(booking, booking.user, token))

    async def _confirm(self, booking: Booking, actor: int, token: str | None) -> None:
        body = {} if token is None else {"payment_token": token}
        r = await self.client.post(
            f"/bookings/{booking.id}/confirm", json=body, headers=self.headers(actor)
        )
        expected = self._confirm_outcome(booking, actor, token)
        assert (r.status_code, r.json().get("code")) == expected, r.text
        if r.status_code == 200:
            self.model.confirm(booking)
            got = r.json()
            assert got["status"] == "confirmed", r.text
            assert sorted(t["seat_id"] for t in got["tickets"]) == sorted(booking.seats)

    @staticmethod
    def _confirm_outcome(booking: Booking, actor: int, token: str | None) -> tuple[int, Any]:
        if actor != booking.user:
            return 404, "not_found"
        if booking.status == "confirmed":
            return 200, None
        if booking.status == "cancelled":
            return 409, "invalid_state"
        if booking.status == "expired" or booking.lapsed:
            return 410, "hold_expired"
        if token == "fail":
            return 402, "payment_declined"
        return 200, None

    @precondition(lambda self: self.model.bookings)
    @rule(data=st.data(), stranger=st.booleans())
    def cancel(self, data: st.DataObject, stranger: bool) -> None:
        booking = self.model.bookings[data.draw(st.sampled_from(self._bookings()), label="id")]
        actor = (booking.user + 1) % USERS if stranger else booking.user
        self.run(self._cancel(booking, actor))

    async def _cancel(self, booking: Booking, actor: int) -> None:
        r = await self.client.post(f"/bookings/{booking.id}/cancel", headers=self.headers(actor))
        if actor != booking.user:
            expected: tuple[int, Any] = (404, "not_found")
        elif booking.status == "expired" or (booking.status == "pending" and booking.lapsed):
            expected = (409, "invalid_state")
        else:
            expected = (200, None)
        assert (r.status_code, r.json().get("code")) == expected, r.text
        if r.status_code == 200:
            assert r.json()["status"] == "cancelled", r.text
            if booking.status != "cancelled":
                self.model.cancel(booking)
                await self._adopt_offers()

    # -- time ----------------------------------------------------------------------------

    def _unlapsed(self) -> list[int]:
        return sorted(
            b.id for b in self.model.bookings.values() if b.status == "pending" and not b.lapsed
        )

    @precondition(lambda self: self._unlapsed())
    @rule(data=st.data())
    def time_passes_a_hold(self, data: st.DataObject) -> None:
        """Move one hold (or offer) past its expiry: its expiry is set in the past."""
        booking = self.model.bookings[data.draw(st.sampled_from(self._unlapsed()), label="id")]
        self.run(self._lapse(booking))
        booking.lapsed = True

    async def _lapse(self, booking: Booking) -> None:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE bookings SET expires_at = now() - interval '1 s' WHERE id = :b"),
                {"b": booking.id},
            )
            await conn.execute(
                text(
                    "UPDATE seats SET held_until = now() - interval '1 s'"
                    " WHERE booking_id = :b AND status = 'held'"
                ),
                {"b": booking.id},
            )
        # A hold lasts 10 minutes and a cached seat map 5: by now it would have expired.
        await cache.invalidate_event(booking.event)

    @rule()
    def sweeper_runs(self) -> None:
        """The worker's beat task: lapsed holds expire, their seats are passed on."""
        expected = sum(
            1 for b in self.model.bookings.values() if b.status == "pending" and b.lapsed
        )
        assert self.run(expire_all_due()) == expected
        self.model.sweep()
        self.run(self._adopt_offers())

    # -- the waitlist --------------------------------------------------------------------

    @rule(data=st.data(), user=st.integers(0, USERS - 1), quantity=st.integers(1, 3))
    def join_waitlist(self, data: st.DataObject, user: int, quantity: int) -> None:
        event = data.draw(st.sampled_from(self.events), label="event")
        self.run(self._join(user, event, quantity))

    async def _join(self, user: int, event: int, quantity: int) -> None:
        model = self.model
        free = len(model.free_seats(event))
        r = await self.client.post(
            "/waitlist/join",
            json={"event_id": event, "quantity": quantity},
            headers=self.headers(user),
        )
        if model.claimed(user, event) + quantity > CAP:
            expected: tuple[int, Any] = (409, "seat_limit_exceeded")
        elif model.active_entry(user, event) is not None or free >= quantity:
            expected = (409, "conflict")
        else:
            expected = (201, None)
        assert (r.status_code, r.json().get("code")) == expected, r.text
        if r.status_code == 201:
            got = r.json()
            assert (got["status"], got["position"]) == ("waiting", len(model.waiting(event)) + 1)
            model.entries[got["id"]] = Entry(got["id"], user, event, quantity)

    @precondition(lambda self: self.model.entries)
    @rule(data=st.data())
    def leave_waitlist(self, data: st.DataObject) -> None:
        entry = self.model.entries[data.draw(st.sampled_from(sorted(self.model.entries)))]
        self.run(self._leave(entry))

    async def _leave(self, entry: Entry) -> None:
        r = await self.client.delete(f"/waitlist/{entry.id}", headers=self.headers(entry.user))
        if entry.status == "offered":
            assert (r.status_code, r.json().get("code")) == (409, "invalid_state"), r.text
            return
        assert r.status_code == 200, r.text
        if entry.status == "waiting":
            entry.status = "left"
        assert r.json()["status"] == entry.status, r.text

    # -- after every step ----------------------------------------------------------------

    @invariant()
    def database_and_buyers_agree_with_the_model(self) -> None:
        """Every invariant holds, the database is what the model says, and so are the
        public seat maps and counts."""
        found, state = self.run(_database())
        assert found == [], found
        for name, (got, expected) in self._compare(state).items():
            assert got == expected, f"{name}: database {got} != model {expected}"
        self.run(self._public_views())

    def _compare(self, state: dict[str, list[Any]]) -> dict[str, tuple[Any, Any]]:
        model, ids = self.model, [c.id for c in self.customers]
        claims, active, tickets = defaultdict(list), defaultdict(list), defaultdict(list)
        for booking_id, seat_id, is_active in state["claims"]:
            claims[booking_id].append(seat_id)
            if is_active:
                active[booking_id].append(seat_id)
        for booking_id, seat_id in state["tickets"]:
            tickets[booking_id].append(seat_id)
        bookings = model.bookings.values()
        return {
            "bookings": (
                {r[0]: tuple(r[1:]) for r in state["bookings"]},
                {
                    b.id: (
                        ids[b.user],
                        b.event,
                        b.status,
                        b.source,
                        b.lapsed and b.status == "pending",
                    )
                    for b in bookings
                },
            ),
            "seats claimed": (dict(claims), {b.id: list(b.seats) for b in bookings}),
            "active claims": (
                dict(active),
                {b.id: list(b.seats) for b in bookings if b.status in LIVE},
            ),
            "tickets": (dict(tickets), {b.id: list(b.seats) for b in bookings if b.ticketed}),
            "seats": (
                {r[0]: (r[1], r[2]) for r in state["seats"]},
                {s: model.stored(s) for s in model.owner},
            ),
            "waitlist": (
                {r[0]: tuple(r[1:]) for r in state["entries"]},
                {
                    e.id: (ids[e.user], e.event, e.quantity, e.status, e.booking)
                    for e in model.entries.values()
                },
            ),
        }

    async def _public_views(self) -> None:
        for event in self.events:
            seats = self.model.seats[event]
            shown = (await self.client.get(f"/events/{event}/seats")).json()["seats"]
            expected = {s: self.model.buyer_status(s, event) for s in seats}
            assert {s["id"]: s["status"] for s in shown} == expected, f"seat map of {event}"
            status = (await self.client.get(f"/events/{event}/status")).json()
            counted = [expected[s] for s in seats]
            assert status == {
                "event_id": event,
                "total": len(seats),
                "available": counted.count("available"),
                "held": counted.count("held"),
                "booked": counted.count("booked"),
            }, f"status of {event}"


SETTINGS = settings(
    max_examples=scale(15, 200),
    stateful_step_count=scale(15, 40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
async def own_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machines run on loops of their own: close the clients bound to the test loop
    (the app builds new ones on each machine's loop); a small cap, no rate limits."""
    configured = get_settings()
    monkeypatch.setattr(configured, "max_seats_per_user_per_event", CAP)
    monkeypatch.setattr(configured, "rate_limit_enabled", False)
    await redis.close()
    await waiting_room_redis.close()
    await db.dispose()
    global WORLD
    WORLD = None  # clean_state emptied the tables: the first example creates it again


def test_booking_protocol_follows_the_model(own_loops: None) -> None:
    """Every step answers as the model says, and every invariant holds after it."""
    del own_loops
    run_state_machine_as_test(BookingMachine, settings=SETTINGS)
