"""Security probes, through the whole ASGI app (fast paths included) on real PostgreSQL
and Redis: other people's resources, roles, tokens, secrets, brute force, hostile bodies,
CORS.

Routes are enumerated from the OpenAPI document, so a new route fails these tests, naming
itself, until it is placed in one of the tables below (and so probed).
"""

import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy import text

from app.core import memo
from app.core.config import Settings, get_settings
from app.core.db import db, transaction
from app.core.security import ALGORITHM, create_access_token
from app.main import api, serve
from app.models import Role
from app.services import users
from tests import factories

# Every operation with an id in its path whose object belongs to someone: (whose, what).
OWNED = {
    "GET /bookings/{booking_id}": "booking",
    "POST /bookings/{booking_id}/confirm": "booking",
    "POST /bookings/{booking_id}/cancel": "booking",
    "POST /bookings/{booking_id}/extend": "booking",
    "GET /bookings/{booking_id}/tickets/{ticket_id}/qr.svg": "booking",
    "DELETE /waitlist/{entry_id}": "entry",
    "GET /admin/events/{event_id}": "draft",
    "PUT /admin/events/{event_id}": "draft",
    "DELETE /admin/events/{event_id}": "draft",
    "POST /admin/events/{event_id}/publish": "draft",
    "GET /admin/events/{event_id}/queue": "draft",
    "POST /admin/events/{event_id}/ticket-keys/rotate": "draft",
    "GET /admin/events/{event_id}/attendees.csv": "draft",
    "POST /admin/users/{user_id}/role": "user",
    "GET /admin/webhooks/{webhook_id}": "webhook",
    "DELETE /admin/webhooks/{webhook_id}": "webhook",
    "POST /admin/webhooks/{webhook_id}/enable": "webhook",
    "GET /admin/webhooks/{webhook_id}/deliveries": "webhook",
    "POST /admin/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": "webhook",
}
# Operations with an id that names a public event; the caller acts on nothing but it, or
# on their own place in its line.
UNOWNED = {
    "GET /events/{event_id}",
    "GET /events/{event_id}/seats",
    "GET /events/{event_id}/status",
    "GET /events/{event_id}/ticket-keys",
    "GET /events/{event_id}/revoked-tickets",
    "POST /events/{event_id}/queue",
    "GET /events/{event_id}/queue/me",
    "DELETE /events/{event_id}/queue/me",
}
PUBLIC = {
    "POST /auth/register",
    "POST /auth/login",
    "GET /events/",
    "GET /events/{event_id}",
    "GET /events/{event_id}/seats",
    "GET /events/{event_id}/status",
    "GET /events/{event_id}/ticket-keys",  # public keys and a signed list of cancelled codes
    "GET /events/{event_id}/revoked-tickets",
    "GET /health",
    "GET /health/ready",
}
# Joining, polling and leaving a waiting room trust the token's signature alone (no
# account read: 10,000 fans poll). A disabled account keeps its place in line until the
# token expires, but cannot book: the hold reads the account.
TOKEN_ONLY = {
    "POST /events/{event_id}/queue",
    "GET /events/{event_id}/queue/me",
    "DELETE /events/{event_id}/queue/me",
}
ADMIN_ONLY = {"POST /admin/users/{user_id}/role", "GET /admin/analytics/reports"}
BODIES: dict[str, Any] = {
    "PUT /admin/events/{event_id}": {"name": "Taken over"},
    "POST /admin/users/{user_id}/role": {"role": "admin"},
    "POST /admin/checkin": {"code": "ABCDEFGHJKLM"},
    "POST /bookings/{booking_id}/confirm": {},
}
SECRET_MARKERS = ("$2b$", "password_hash", "correct-horse-battery", "private_key", "PRIVATE KEY")


def operations() -> list[str]:
    paths = api.openapi()["paths"]
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


def secured() -> list[str]:
    paths = api.openapi()["paths"]
    return [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method, op in ops.items()
        if op.get("security")
    ]


def url_of(op: str, event: int = 1) -> str:
    """The operation's path with every id 1 (`event` for events): for checks that refuse
    before the object is looked up."""
    numbered = ("booking_id", "entry_id", "user_id", "ticket_id", "webhook_id", "delivery_id")
    ids = dict.fromkeys(numbered, 1) | {"event_id": event}
    return op.split(" ", 1)[1].format(**ids)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    owner: factories.Account  # the organizer of both events
    victim: factories.Account  # a customer with a booking and a waitlist entry
    stranger: factories.Account
    rival: factories.Account  # another organizer
    admin: factories.Account
    event: int  # published, sold out (the victim holds its one seat)
    draft: int
    booking: int
    entry: int
    webhook: int  # the owner's

    def url(self, op: str) -> str:
        ids = {"booking_id": self.booking, "entry_id": self.entry, "user_id": self.victim.id}
        ids["ticket_id"] = 1  # the booking is held, not paid: the owner has no ticket yet
        ids["webhook_id"], ids["delivery_id"] = self.webhook, 1
        ids["event_id"] = self.draft if "/admin/" in op else self.event
        return op.split(" ", 1)[1].format(**ids)


async def call(client: httpx.AsyncClient, op: str, url: str, **kw: Any) -> httpx.Response:
    body = BODIES.get(op)
    return await client.request(op.split()[0], url, json=body, **kw)


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    owner, rival = await factories.account(Role.ORGANIZER), await factories.account(Role.ORGANIZER)
    victim, stranger = await factories.account(), await factories.account()
    admin = await factories.account(Role.ADMIN)
    event = await factories.event(owner, factories.ga_spec(capacity=1))
    draft = await factories.event(owner, factories.ga_spec(capacity=5), publish=False)
    held = await client.post(
        "/bookings/", json={"event_id": event, "quantity": 1}, headers=victim.headers
    )
    joined = await client.post(
        "/waitlist/join", json={"event_id": event, "quantity": 1}, headers=stranger.headers
    )
    assert (held.status_code, joined.status_code) == (201, 201), (held.text, joined.text)
    entry = joined.json()["id"]  # the stranger's: the victim's seat sold the event out
    hook = await client.post(
        "/admin/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["booking.confirmed"]},
        headers=owner.headers,
    )
    assert hook.status_code == 201, hook.text
    booking = held.json()["id"]
    return World(
        owner, victim, stranger, rival, admin, event, draft, booking, entry, hook.json()["id"]
    )


class TestOwnership:
    def test_every_id_route_is_classified(self) -> None:
        with_ids = {op for op in operations() if "{" in op}
        assert with_ids - set(OWNED) - UNOWNED == set(), "unprobed {id} routes"

    async def test_non_owners_are_refused(self, client, world: World) -> None:
        intruders = {
            "booking": (world.stranger, world.owner, world.rival),  # the event's organizer too
            "entry": (world.victim, world.owner, world.rival),
            "draft": (world.victim, world.rival),
            "user": (world.victim, world.rival),
            "webhook": (world.victim, world.rival),
        }
        booking_url = f"/bookings/{world.booking}"
        before = (await client.get(booking_url, headers=world.victim.headers)).json()
        refused = []
        for op, kind in OWNED.items():
            for intruder in intruders[kind]:
                response = await call(client, op, world.url(op), headers=intruder.headers)
                if response.status_code not in (403, 404):
                    refused.append((op, intruder.email, response.status_code))
        assert refused == []
        after = (await client.get(booking_url, headers=world.victim.headers)).json()
        assert after == before  # not confirmed, cancelled or extended
        await self._nothing_changed(client, world)

    async def _nothing_changed(self, client: httpx.AsyncClient, world: World) -> None:
        entries = await client.get("/waitlist/my-entries", headers=world.stranger.headers)
        listed = entries.json()
        items = listed["items"] if isinstance(listed, dict) else listed  # a page, or a list
        assert [e["status"] for e in items] == ["waiting"]
        draft = await client.get(f"/admin/events/{world.draft}", headers=world.owner.headers)
        assert (draft.json()["status"], draft.json()["name"]) == ("draft", "Test Festival")
        me = await client.get("/auth/me", headers=world.victim.headers)
        assert me.json()["role"] == "customer"
        hook = await client.get(f"/admin/webhooks/{world.webhook}", headers=world.owner.headers)
        assert hook.status_code == 200  # not deleted by anyone else


class TestRoles:
    def test_unauthenticated_routes_are_the_known_public_ones(self) -> None:
        assert set(operations()) - set(secured()) == PUBLIC

    async def test_every_secured_route_needs_a_token(self, client) -> None:
        answers = {op: (await call(client, op, url_of(op))).status_code for op in secured()}
        assert {op: s for op, s in answers.items() if s != 401} == {}

    async def test_admin_routes_refuse_customers_and_organizers(self, client, world: World) -> None:
        admin_ops = [op for op in operations() if op.split()[1].startswith("/admin")]
        assert len(admin_ops) >= 10
        statuses = {}
        for op in admin_ops:
            response = await call(client, op, world.url(op), headers=world.victim.headers)
            statuses[op] = response.status_code
        for op in ADMIN_ONLY:
            response = await call(client, op, world.url(op), headers=world.owner.headers)
            statuses[f"{op} (organizer)"] = response.status_code
        assert {op: s for op, s in statuses.items() if s != 403} == {}

    async def test_registration_cannot_choose_a_role(self, client) -> None:
        body = {"email": "mallory@example.com", "password": "long-enough-pw", "role": "admin"}
        body |= {"is_active": True, "id": 1, "password_hash": "$2b$04$forged"}
        created = await client.post("/auth/register", json=body)
        assert created.status_code == 201
        assert created.json()["role"] == "customer"
        form = {"username": body["email"], "password": body["password"]}
        token = (await client.post("/auth/login", data=form)).json()["access_token"]
        assert (await client.get("/admin/events", headers=bearer(token))).status_code == 403
        async with db.engine.connect() as conn:
            role = await conn.scalar(
                text("SELECT role FROM users WHERE email = :e"), {"e": body["email"]}
            )
        assert str(role).lower().endswith("customer")


def _part(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(user_id: int, admin_id: int, real: str) -> dict[str, str]:
    """Tokens that must all be refused; `real` is a valid token of `user_id`."""
    exp = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    claims = {"sub": str(user_id), "exp": exp, "typ": "access"}
    secret = get_settings().secret_key
    header, _, signature = real.split(".")
    return {
        "alg none": f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}.",
        "wrong key": jwt.encode(claims, "x" * 48, algorithm=ALGORITHM),
        "other algorithm": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": create_access_token(user_id, minutes=-1),
        "no expiry": jwt.encode(
            {"sub": str(user_id), "typ": "access"}, secret, algorithm=ALGORITHM
        ),
        "not an access token": jwt.encode(claims | {"typ": "refresh"}, secret, algorithm=ALGORITHM),
        "tampered payload": f"{header}.{_part(claims | {'sub': str(admin_id)})}.{signature}",
        "garbage": "not.a.jwt",
    }


class TestTokens:
    PROBED = ("GET /auth/me", "GET /bookings/my-bookings", *sorted(TOKEN_ONLY))

    async def test_forged_tokens_are_401_even_after_a_valid_one(self, client, world: World) -> None:
        for op in self.PROBED:  # the valid token is now in every per-process cache
            response = await call(client, op, world.url(op), headers=world.victim.headers)
            assert response.status_code != 401, (op, response.text)
        tokens = forged_tokens(world.victim.id, world.admin.id, world.victim.token)
        answers = {
            (name, op): (await call(client, op, world.url(op), headers=bearer(token))).status_code
            for name, token in tokens.items()
            for op in self.PROBED
        }
        assert {k: s for k, s in answers.items() if s != 401} == {}

    async def test_a_token_expiring_while_remembered_is_401(self, client, world: World) -> None:
        expires = math.ceil(time.time() + 0.5)  # remembered for 0.5-1.5 s
        claims = {"sub": str(world.victim.id), "exp": expires, "typ": "access"}
        token = jwt.encode(claims, get_settings().secret_key, algorithm=ALGORITHM)
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
        assert token in memo.verified_tokens
        await asyncio.sleep(expires + 1.05 - time.time())  # python-jose counts whole seconds
        for op in self.PROBED:
            response = await call(client, op, world.url(op), headers=bearer(token))
            assert response.status_code == 401, op

    async def test_disabled_here_is_401_at_once(self, client, world: World) -> None:
        victim = world.victim
        assert (await client.get("/auth/me", headers=victim.headers)).status_code == 200
        async with transaction() as uow:
            await users.set_active(uow, victim.id, False)
        answers = {}
        for op in set(secured()) - TOKEN_ONLY:
            answers[op] = (
                await call(client, op, world.url(op), headers=victim.headers)
            ).status_code
        assert {op: s for op, s in answers.items() if s != 401} == {}
        form = {"username": victim.email, "password": factories.PASSWORD}
        assert (await client.post("/auth/login", data=form)).status_code == 401

    @pytest.mark.parametrize(
        "statement",
        ["UPDATE users SET is_active = false WHERE id = :id", "DELETE FROM users WHERE id = :id"],
    )
    async def test_changed_elsewhere_is_401_within_the_account_ttl(
        self, client, statement: str
    ) -> None:
        user = await factories.account()
        assert (await client.get("/auth/me", headers=user.headers)).status_code == 200
        async with db.engine.begin() as conn:  # another process, or an operator's SQL
            await conn.execute(text(statement), {"id": user.id})
        # Until ACCOUNT_TTL_S has passed this process may still answer from memory ...
        assert memo.ACCOUNT_TTL_S <= 5
        memo.accounts.expire(time.monotonic() + memo.ACCOUNT_TTL_S)  # ... and no longer
        assert (await client.get("/auth/me", headers=user.headers)).status_code == 401
        assert (await client.get("/bookings/my-bookings", headers=user.headers)).status_code == 401


class TestSecrets:
    async def test_no_response_holds_a_hash_or_secret(self, client, world: World) -> None:
        confirmed = await client.post(
            f"/bookings/{world.booking}/confirm", json={}, headers=world.victim.headers
        )
        assert confirmed.status_code == 200
        bodies = [confirmed.text]
        for who in (world.admin, world.owner, world.victim):
            for op in operations():
                if op.startswith("GET "):
                    bodies.append((await call(client, op, world.url(op), headers=who.headers)).text)
        promote = "POST /admin/users/{user_id}/role"
        bodies.append(
            (await call(client, promote, world.url(promote), headers=world.admin.headers)).text
        )
        bad = {"email": "not-an-email", "password": "correct-horse-battery"}  # echoed back?
        bodies.append((await client.post("/auth/register", json=bad)).text)
        form = {"username": world.victim.email, "password": factories.PASSWORD}
        bodies.append((await client.post("/auth/login", data=form)).text)
        assert len(bodies) > 40
        markers = (*SECRET_MARKERS, get_settings().secret_key)
        leaks = [(m, b[:120]) for b in bodies for m in markers if m in b]
        assert leaks == []


class TestBruteForce:
    async def test_password_spraying_from_one_address_is_429(self, client) -> None:
        limit = 20  # RATE_LIMIT_LOGIN_IP=20/minute
        assert get_settings().rate_limit_login_ip == f"{limit}/minute"
        statuses = []
        for n in range(limit + 1):
            form = {"username": f"user{n}@example.com", "password": "Summer2024!"}
            statuses.append((await client.post("/auth/login", data=form)).status_code)
        assert statuses == [401] * limit + [429]

    async def test_guessing_one_password_locks_the_account_out(self, client) -> None:
        user = await factories.account()
        guesses = [
            (
                await client.post(
                    "/auth/login", data={"username": user.email, "password": f"guess{n}"}
                )
            )
            for n in range(6)
        ]
        assert [g.status_code for g in guesses] == [401] * 5 + [429]
        assert int(guesses[-1].headers["retry-after"]) >= 1
        right = {"username": user.email, "password": factories.PASSWORD}
        assert (await client.post("/auth/login", data=right)).status_code == 429


MIB = 1024 * 1024
TEN_MB = b'{"name": "' + b"x" * (10 * MIB) + b'"}'
JSON_HEADERS = {"content-type": "application/json"}


def nested(depth: int) -> bytes:
    return b'{"event_id": ' + b"[" * depth + b"]" * depth + b"}"


# (operation, body): numbers no column can hold, negative or absurd counts, ids past int64.
ABSURD = [
    ("POST /bookings/", '{"event_id": 1e308, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": 1e400, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": NaN, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": <googol>, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": <int64>, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": <int32>, "quantity": 1}'),
    ("POST /bookings/", '{"event_id": <event>, "quantity": -1}'),
    ("POST /bookings/", '{"event_id": <event>, "quantity": <googol>}'),
    ("POST /bookings/", '{"event_id": <event>, "quantity": 1e308}'),
    ("POST /bookings/", '{"event_id": <event>, "seat_ids": [<int64>]}'),
    ("POST /bookings/", '{"event_id": <event>, "seat_ids": [-1]}'),
    ("POST /bookings/", '{"event_id": <5000 digits>}'),
    ("POST /waitlist/join", '{"event_id": <event>, "quantity": <googol>}'),
    ("POST /waitlist/join", '{"event_id": -<int64>}'),
    ("POST /admin/checkin", '{"code": "ABCDEFGH", "event_id": <int64>}'),
    ("GET /bookings/<int64>", ""),
    ("GET /bookings/-1", ""),
    ("GET /events/<googol>/seats", ""),
    ("GET /events/<googol>/queue/me", ""),
    ("GET /events/?limit=<googol>", ""),
    ("GET /bookings/my-bookings?offset=1e308", ""),
    ("GET /admin/events?offset=-1", ""),
]


class TestHostileBodies:
    BODY_OPS = (
        "POST /auth/register",
        "POST /auth/login",
        "POST /bookings/",
        "POST /waitlist/join",
        "POST /admin/events",
        "PUT /admin/events/{event_id}",
        "POST /events/{event_id}/queue",  # the waiting room's ASGI fast path
        "GET /events/{event_id}/seats",  # cached reads' fast path
    )

    async def test_ten_megabytes_are_413_at_once(self, client) -> None:
        for op in self.BODY_OPS:
            started = time.perf_counter()
            response = await client.request(
                op.split()[0], url_of(op), content=TEN_MB, headers=JSON_HEADERS
            )  # no token: nothing is read, parsed or looked up first
            assert (response.status_code, response.json()["code"]) == (413, "body_too_large"), op
            assert time.perf_counter() - started < 1.0, op

    async def test_a_streamed_body_is_cut_off_at_the_limit(self, client) -> None:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(160):  # 10 MB in 64 KiB chunks, no Content-Length
                sent += 64 * 1024
                yield b" " * (64 * 1024)

        for op in ("POST /bookings/", "POST /admin/events", "POST /auth/register"):
            sent = 0
            response = await client.request(
                op.split()[0], url_of(op), content=chunks(), headers=JSON_HEADERS
            )
            assert response.status_code == 413, op
            assert sent <= get_settings().max_body_bytes + 64 * 1024, op  # not read to the end

    async def test_deep_nesting_is_4xx_quickly(self, client, customer) -> None:
        slow_or_wrong = []
        for depth in (100_000, 5_000, 900):  # past and within the parser's recursion limit
            for op in ("POST /auth/register", "POST /bookings/", "POST /waitlist/join"):
                started = time.perf_counter()
                response = await client.post(
                    url_of(op), content=nested(depth), headers=customer.headers | JSON_HEADERS
                )
                took = time.perf_counter() - started
                if not 400 <= response.status_code < 500 or took > 1.0:
                    slow_or_wrong.append((op, depth, response.status_code, round(took, 2)))
        assert slow_or_wrong == []

    async def test_absurd_numbers_are_4xx_not_database_errors(self, client, organizer) -> None:
        numbers = {"<googol>": str(10**100), "<int64>": str(2**63), "<int32>": str(2**31)}
        numbers |= {"<5000 digits>": "9" * 5000, "<event>": "1"}
        wrong = []
        for op, body in ABSURD:
            for name, value in numbers.items():
                op, body = op.replace(name, value), body.replace(name, value)
            method, url = op.split(" ", 1)
            headers = organizer.headers | JSON_HEADERS
            response = await client.request(method, url, content=body.encode(), headers=headers)
            code = response.json()["code"]
            if not 400 <= response.status_code < 500 or code in ("invalid_value", "internal_error"):
                wrong.append((op[:60], body[:60], response.status_code, code))
        assert wrong == []


class TestCors:
    ORIGIN = "https://tickets.example.com"

    @pytest.fixture
    async def open_client(self, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
        monkeypatch.setattr(get_settings(), "cors_origins", f"{self.ORIGIN}, http://localhost:5173")
        transport = httpx.ASGITransport(app=serve(api))
        async with httpx.AsyncClient(transport=transport, base_url="http://evently.test") as c:
            yield c

    def preflight(self, origin: str) -> dict[str, str]:
        return {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        }

    async def test_closed_by_default(self, client, world: World) -> None:
        assert get_settings().cors_origins == ""
        for method, url, headers in [
            ("OPTIONS", "/bookings/", self.preflight(self.ORIGIN)),
            ("GET", "/health", {"Origin": self.ORIGIN}),
            ("GET", f"/events/{world.event}/seats", {"Origin": self.ORIGIN}),
        ]:
            response = await client.request(method, url, headers=headers)
            assert "access-control-allow-origin" not in response.headers, (method, url)

    async def test_a_configured_origin_may_call(self, open_client, world: World) -> None:
        allowed = await open_client.options("/bookings/", headers=self.preflight(self.ORIGIN))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == self.ORIGIN
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        for url in ("/health", f"/events/{world.event}/seats", f"/events/{world.event}/seats"):
            response = await open_client.get(url, headers={"Origin": self.ORIGIN})
            assert response.headers["access-control-allow-origin"] == self.ORIGIN, url
        assert response.headers["x-cache"] == "hit"  # the fast path is covered too

    async def test_another_origin_is_refused(self, open_client) -> None:
        refused = await open_client.options(
            "/bookings/", headers=self.preflight("https://evil.example")
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        plain = await open_client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in plain.headers

    @pytest.mark.parametrize("value", ["https://tickets.example.com/", "tickets.example.com"])
    def test_a_malformed_origin_is_refused_at_start(self, value: str) -> None:
        with pytest.raises(ValueError, match="CORS_ORIGINS"):
            Settings(cors_origins=value)
