"""The virtual waiting room, on real Redis and PostgreSQL: fair order, the admission rate,
signed passes, a line rebuilt after Redis lost it, and failing closed while Redis is down.

Time is a fake clock (`waiting_room.clock`) where the test needs seconds to pass: the
admission arithmetic is the production Lua script's, fed another "now".
"""

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, text

from app.core import admission
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.redis import redis
from app.core.security import create_access_token, hash_password
from app.infra.waiting_room import guard as line_guard
from app.models import Role, User
from app.schemas.event import QueueSettings
from app.services import waiting_room
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.servers import RedisProcess

RATE = 50


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(waiting_room, "clock", fake)
    return fake


@pytest.fixture(autouse=True)
def no_join_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of fans join from the test's one address; the limit has its own test."""
    monkeypatch.setattr(get_settings(), "rate_limit_queue_join_ip", "100000/minute")


async def fans(count: int) -> list[factories.Account]:
    """`count` customers in one insert (one shared password hash), with access tokens."""
    password_hash = hash_password(factories.PASSWORD)
    rows = [
        {
            "email": f"fan{n}@example.com",
            "full_name": f"Fan {n}",
            "password_hash": password_hash,
            "role": Role.CUSTOMER,
            "is_active": True,
        }
        for n in range(count)
    ]
    async with unit_of_work() as uow:
        stmt = insert(User).returning(User.id, User.email, sort_by_parameter_order=True)
        created = (await uow.session.execute(stmt, rows)).all()
        await uow.commit()
    return [
        factories.Account(user_id, email, Role.CUSTOMER, create_access_token(user_id))
        for user_id, email in created
    ]


async def queued_event(
    organizer: factories.Account,
    seats: int = 50,
    rate: int = RATE,
    minutes: int = 10,
    sale_starts_at: datetime | None = None,
) -> int:
    spec = factories.seated_spec([("A", seats // 10, 10, 5000)])
    spec.sale_starts_at = sale_starts_at
    spec.queue = QueueSettings(enabled=True, admit_per_second=rate, admission_minutes=minutes)
    return await factories.event(organizer, spec)


async def join(client: httpx.AsyncClient, event_id: int, fan: factories.Account) -> dict:
    response = await client.post(f"/events/{event_id}/queue", headers=fan.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def poll(
    client: httpx.AsyncClient, event_id: int, fan: factories.Account, **tokens: str
) -> httpx.Response:
    headers = dict(fan.headers)
    if "queue_token" in tokens:
        headers["Queue-Token"] = tokens["queue_token"]
    if "admission_token" in tokens:
        headers["Admission-Token"] = tokens["admission_token"]
    return await client.get(f"/events/{event_id}/queue/me", headers=headers)


async def place(event_id: int, fan: factories.Account) -> waiting_room.QueueStatus:
    return await waiting_room.status(fan.id, event_id, None, None)


async def states(event_id: int, people: list[factories.Account]) -> set[str]:
    return {(await place(event_id, fan)).state for fan in people}


def ranks(values: list[int]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    for rank, index in enumerate(order):
        out[index] = float(rank)
    return out


def spearman(xs: list[int], ys: list[int]) -> float:
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mean = (n - 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry, strict=True))
    var = sum((a - mean) ** 2 for a in rx)
    return cov / var


def chi_square(join_order: list[int], places: list[int], bins: int = 5) -> float:
    """Independence of join quintile and place quintile (df = 16)."""
    n = len(places)
    table = [[0] * bins for _ in range(bins)]
    for joined, placed in zip(join_order, places, strict=True):
        table[joined * bins // n][(placed - 1) * bins // n] += 1
    expected = n / bins / bins
    return sum((cell - expected) ** 2 / expected for row in table for cell in row)


class TestOrder:
    async def test_after_opening_admitted_order_is_join_order(
        self, client, organizer, clock
    ) -> None:
        event_id = await queued_event(organizer)
        people = await fans(1000)
        for n, fan in enumerate(people):  # the clock stands still: nobody is admitted yet
            assert (await join(client, event_id, fan))["position"] == n + 1
        again = await join(client, event_id, people[0])  # one entry per account
        assert again["position"] == 1

        last_seen = 1000
        for n, fan in enumerate(people):
            clock.advance(1 / RATE)  # exactly one admission's worth
            assert (await place(event_id, fan)).state == "admitted", n
            if n + 1 < len(people):
                assert (await place(event_id, people[n + 1])).position == 1, n
            if n % 50 == 0 and n + 1 < len(people):
                tail = (await place(event_id, people[-1])).position
                assert tail is not None
                assert tail <= last_seen  # never moves backwards
                last_seen = tail

    async def test_before_opening_places_are_drawn_fairly(self, client, organizer, clock) -> None:
        opens = datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1)
        event_id = await queued_event(organizer, sale_starts_at=opens)
        people = await fans(501)
        early, late = people[:500], people[500]
        for fan in early:
            body = await join(client, event_id, fan)
            assert body["position"] is None  # not drawn before the sale opens
            assert body["opens_in_s"] == 3600
        clock.advance(3600)
        places = [(await place(event_id, fan)).position for fan in early]
        assert sorted(places) == list(range(1, 501))  # a permutation
        positions = [p for p in places if p is not None]
        assert positions != list(range(1, 501))
        rho = spearman(list(range(500)), positions)
        assert abs(rho) < 0.15, rho  # ~3 standard deviations of rho for n = 500
        chi2 = chi_square(list(range(500)), positions)
        assert chi2 < 39.25, chi2  # p = 0.001 at 16 degrees of freedom
        assert (await join(client, event_id, late))["position"] == 501  # behind every early one


class TestRate:
    async def test_admissions_follow_the_rate(self, client, organizer, clock) -> None:
        event_id = await queued_event(organizer)
        people = await fans(1000)
        for fan in people:
            await join(client, event_id, fan)
        rng = random.Random(10)
        elapsed = 0.0
        while elapsed < 10.0:  # pollers arriving at random moments for ten seconds
            step = min(rng.uniform(0.005, 0.25), 10.0 - elapsed)
            clock.advance(step)
            elapsed += step
            await place(event_id, rng.choice(people))
        stats = await admin_stats(client, organizer, event_id)
        assert 475 <= stats["admitted"] <= 525, stats
        assert stats["waiting"] == 1000 - stats["admitted"]

        # The organizer doubles the rate during the sale.
        update = {"queue": {"admit_per_second": 100}}
        path = f"/admin/events/{event_id}"
        changed = await client.put(path, json=update, headers=organizer.headers)
        assert changed.status_code == 200, changed.text
        assert changed.json()["queue"]["admit_per_second"] == 100
        before = stats["admitted"]
        clock.advance(2.0)
        await place(event_id, people[-1])
        after = (await admin_stats(client, organizer, event_id))["admitted"]
        assert 190 <= after - before <= 210


async def admin_stats(
    client: httpx.AsyncClient, organizer: factories.Account, event_id: int
) -> dict:
    response = await client.get(f"/admin/events/{event_id}/queue", headers=organizer.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def admitted_token(
    client: httpx.AsyncClient, clock: FakeClock, event_id: int, fan: factories.Account
) -> str:
    """Join, and be admitted a second later (the line here is short)."""
    await join(client, event_id, fan)
    clock.advance(1.0)
    body = (await poll(client, event_id, fan)).json()
    assert body["state"] == "admitted", body
    return str(body["admission_token"])


async def hold(
    client: httpx.AsyncClient, event_id: int, fan: factories.Account, token: str | None
) -> httpx.Response:
    headers = dict(fan.headers)
    if token is not None:
        headers["Admission-Token"] = token
    return await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=headers
    )


class TestTokens:
    async def test_only_a_genuine_current_admission_of_this_user_and_event_books(
        self, client, organizer, clock
    ) -> None:
        event_id, other_event = await queued_event(organizer), await queued_event(organizer)
        ada, bob = await fans(2)
        token = await admitted_token(client, clock, event_id, ada)
        elsewhere = await admitted_token(client, clock, other_event, ada)
        bobs = await admitted_token(client, clock, event_id, bob)
        queue_token = admission.sign_queue(event_id, ada.id, 10**15)  # genuine, another pass
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        tampered = token.replace(f".{ada.id}.", f".{bob.id}.")
        refused = {
            "none": (None, "admission_required"),
            "forged": (forged, "admission_invalid"),
            "tampered": (tampered, "admission_invalid"),
            "other user's": (bobs, "admission_invalid"),
            "other event's": (elsewhere, "admission_invalid"),
            "a queue token": (queue_token, "admission_invalid"),
        }
        for name, (sent, code) in refused.items():
            response = await hold(client, event_id, ada, sent)
            assert response.status_code == 403, name
            assert response.json()["code"] == code, name
            assert response.json()["queue"] == f"/events/{event_id}/queue", name
        assert (await hold(client, event_id, ada, token)).status_code == 201
        assert (await hold(client, event_id, ada, token)).status_code == 201  # until it expires
        booked = (await poll(client, event_id, ada)).json()
        assert booked["state"] == "booked"

        clock.advance(10 * 60 + 1)  # past admission_minutes
        expired = await hold(client, event_id, bob, bobs)
        assert expired.status_code == 403
        assert expired.json()["code"] == "admission_expired"

    async def test_events_without_a_waiting_room_are_unaffected(self, client, organizer) -> None:
        plain = await factories.seated_event(organizer)
        (fan,) = await fans(1)
        assert (await hold(client, plain, fan, None)).status_code == 201
        joined = await client.post(f"/events/{plain}/queue", headers=fan.headers)
        assert joined.status_code == 409
        assert joined.json()["code"] == "queue_not_enabled"

    async def test_joins_are_limited_per_address(self, client, organizer, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "rate_limit_queue_join_ip", "3/minute")
        event_id = await queued_event(organizer)
        people = await fans(4)
        statuses = [
            (await client.post(f"/events/{event_id}/queue", headers=f.headers)).status_code
            for f in people
        ]
        assert statuses == [200, 200, 200, 429]


class TestRedisLoss:
    async def test_a_flushed_line_is_rebuilt_from_the_tokens_clients_present(
        self, client, organizer, clock
    ) -> None:
        event_id = await queued_event(organizer)
        people = await fans(200)
        tokens = [(await join(client, event_id, fan))["queue_token"] for fan in people]
        clock.advance(1.0)  # the first 50 are admitted
        admitted = {}
        for fan in people[:50]:
            admitted[fan.id] = (await poll(client, event_id, fan)).json()["admission_token"]
        assert (await place(event_id, people[50])).position == 1

        await redis.client.flushdb()  # a restart without persistence
        back = list(zip(people, tokens, strict=True))
        random.Random(7).shuffle(back)
        for fan, token in back:  # everyone comes back, in any order, with what they hold
            sent = {"queue_token": token}
            if fan.id in admitted:
                sent["admission_token"] = admitted[fan.id]
            assert (await poll(client, event_id, fan, **sent)).status_code == 200
        for n, fan in enumerate(people[50:]):
            now = await place(event_id, fan)
            assert (now.state, now.position) == ("waiting", n + 1)
            assert now.rebuilding
        assert await states(event_id, people[:50]) == {"admitted"}

        clock.advance(get_settings().queue_rebuild_s + 1.0)  # rebuilt: one second of admissions
        assert await states(event_id, people[50:100]) == {"admitted"}
        assert (await place(event_id, people[100])).position == 1
        stats = await admin_stats(client, organizer, event_id)
        assert stats["restored"] == 200


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    for guard in (redis, line_guard):
        await guard.use(server.url)
    try:
        yield server
    finally:
        server.stop()
        for guard in (redis, line_guard):
            await guard.use(TEST_REDIS_URL)


@pytest.mark.slow
class TestRedisDown:
    async def test_the_queue_fails_closed(self, client, organizer, clock, own_redis) -> None:
        event_id = await queued_event(organizer, rate=1)  # Bob waits behind Ada
        plain = await factories.seated_event(organizer)
        ada, bob = await fans(2)
        token = await admitted_token(client, clock, event_id, ada)
        queue_token = (await join(client, event_id, bob))["queue_token"]

        own_redis.stop()
        for response in (
            await client.post(f"/events/{event_id}/queue", headers=bob.headers),
            await poll(client, event_id, bob, queue_token=queue_token),
            await client.delete(f"/events/{event_id}/queue/me", headers=bob.headers),
        ):
            assert response.status_code == 503
            assert response.json()["code"] == "queue_unavailable"
            assert int(response.headers["retry-after"]) >= 1
        assert (await hold(client, event_id, bob, None)).status_code == 403  # never open
        assert (await hold(client, event_id, ada, token)).status_code == 201  # a signed pass
        assert (await hold(client, plain, bob, None)).status_code == 201  # others unaffected

        own_redis.start()  # empty: the line is rebuilt from the tokens clients hold
        back = await poll(client, event_id, bob, queue_token=queue_token)
        for _ in range(3):  # as a client does: come back a little later
            if back.status_code != 503:
                break
            await asyncio.sleep(1.1)  # the guard's breaker lets a call through after 1 s
            back = await poll(client, event_id, bob, queue_token=queue_token)
        assert back.status_code == 200
        assert back.json()["state"] == "waiting"


def test_passes_do_not_stand_in_for_each_other() -> None:
    queue_token = admission.sign_queue(1, 2, 10**15)
    assert admission.admission_expiry(queue_token, 1, 2) is None
    assert admission.read_queue(queue_token, 1, 2) == admission.QueuePass(1, 2, 10**15)
    assert admission.read_queue(queue_token, 1, 3) is None
    early = admission.sign_queue(1, 2, admission.early_draw(1, 2))
    assert "early" in early  # the draw itself is not shown
    assert admission.read_queue(early, 1, 2) == admission.QueuePass(
        1, 2, admission.early_draw(1, 2)
    )


class TestRoutes:
    @pytest.mark.usefixtures("clock")
    async def test_the_fast_path_and_the_routes_answer_alike(self, organizer) -> None:
        """Joins and polls are served before FastAPI (app.api.queuepath); the FastAPI
        routes (the OpenAPI document, and what the fast path does not match) agree."""
        from app.main import api, app

        answers = {}
        ada, bob = await fans(2)
        for name, asgi in (("fast", app), ("routes", api)):
            event_id = await queued_event(organizer, rate=1)
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                await join(http, event_id, ada)
                mine = (await poll(http, event_id, bob)).json()
                joined = await join(http, event_id, bob)
                again = await poll(http, event_id, bob, queue_token=joined["queue_token"])
                nobody = await http.get(f"/events/{event_id}/queue/me")
            answers[name] = (
                mine["code"],
                {k: v for k, v in again.json().items() if k not in ("event_id", "queue_token")},
                nobody.status_code,
            )
        assert answers["fast"] == answers["routes"]
        assert answers["fast"][0] == "not_in_queue"
        assert answers["fast"][1]["position"] == 2
        assert answers["fast"][2] == 401


@pytest.mark.slow
async def test_the_websocket_follows_a_place_until_admission(organizer) -> None:
    """A real API process (the clock is the real one): Cara's position goes 2, 1, then
    her admission token comes and the socket closes (about two seconds at one a second)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

    from tests.servers import ApiProcess

    event_id = await queued_event(organizer, rate=1)
    ada, bob, cara = await fans(3)
    api = ApiProcess(env={"RATE_LIMIT_QUEUE_JOIN_IP": "100/minute"})
    api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url) as http:
            for fan in (ada, bob):  # Ada goes straight in (a second's worth of credit)
                await join(http, event_id, fan)
            token = (await join(http, event_id, cara))["queue_token"]
        url = api.url.replace("http://", "ws://") + f"/events/{event_id}/queue/live"
        seen = []
        async with connect(f"{url}?queue_token={token}") as ws:
            try:
                while True:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 3.0)))
            except ConnectionClosedOK:
                pass  # closed by the server once admitted
        assert [s["position"] for s in seen if s["state"] == "waiting"] == [2, 1]
        assert seen[-1]["state"] == "admitted"
        assert seen[-1]["admission_token"]
        async with connect(f"{url}?queue_token=forged") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4404
    finally:
        api.stop()


@pytest.mark.slow
async def test_joins_with_no_database_connection_free_are_503_not_500(
    client, organizer, monkeypatch
) -> None:
    """A join whose event settings must be read while every pooled connection is taken is
    answered 503 (fast path or not), and concurrent joins share that one read."""
    from app.core.db import db, unit_of_work

    event_id = await queued_event(organizer)
    people = await fans(20)
    monkeypatch.setattr(get_settings(), "db_pool_size", 1)
    monkeypatch.setattr(get_settings(), "db_read_pool_size", 1)
    monkeypatch.setattr(get_settings(), "db_max_overflow", 0)
    monkeypatch.setattr(get_settings(), "db_pool_timeout_s", 0.2)
    await db.dispose()
    try:
        # The only connection of each pool (the settings are read on the small read pool).
        async with db.engine.connect() as taken, unit_of_work(cache_fill=True) as reading:
            await taken.exec_driver_sql("SELECT 1")
            await reading.session.execute(text("SELECT 1"))
            answers = await asyncio.gather(
                *(client.post(f"/events/{event_id}/queue", headers=f.headers) for f in people)
            )
        assert {a.status_code for a in answers} == {503}
        assert {a.json()["code"] for a in answers} == {"overloaded"}
        assert all(a.headers["retry-after"] for a in answers)
        assert (
            await client.post(f"/events/{event_id}/queue", headers=people[0].headers)
        ).status_code == 200
    finally:
        monkeypatch.undo()
        await db.dispose()
