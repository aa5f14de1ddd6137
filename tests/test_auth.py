"""Registration, login, tokens, roles, and who may touch whose resources."""

from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt

from app.core.security import ALGORITHM, create_access_token
from app.models import Role
from tests import factories

SECRET = "test-secret-key-that-is-long-enough-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestRegister:
    @pytest.mark.parametrize("email", ["fan@venue.test", "fan@box.local"])
    async def test_any_address_of_the_published_format_is_accepted(self, client, email) -> None:
        # The schema says `format: email`; special-use domains have that format too.
        body = {"email": email, "password": "s3cret-pass"}
        assert (await client.post("/auth/register", json=body)).status_code == 201

    async def test_register_login_me(self, client) -> None:
        created = await client.post(
            "/auth/register",
            json={"email": "Ann@Example.com", "password": "s3cret-pass", "full_name": "Ann"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["email"] == "ann@example.com"
        assert "password_hash" not in created.json()
        login = await client.post(
            "/auth/login", data={"username": "ANN@example.com", "password": "s3cret-pass"}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        assert login.json()["token_type"] == "bearer"
        me = await client.get("/auth/me", headers=bearer(token))
        assert me.json()["email"] == "ann@example.com"
        assert me.json()["role"] == "customer"

    async def test_role_in_body_is_ignored(self, client) -> None:
        response = await client.post(
            "/auth/register",
            json={"email": "mallory@example.com", "password": "s3cret-pass", "role": "admin"},
        )
        assert response.status_code == 201
        assert response.json()["role"] == "customer"

    async def test_duplicate_email_is_409(self, client) -> None:
        body = {"email": "dup@example.com", "password": "s3cret-pass"}
        assert (await client.post("/auth/register", json=body)).status_code == 201
        again = await client.post("/auth/register", json={**body, "email": "DUP@example.com"})
        assert again.status_code == 409

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "not-an-email", "password": "s3cret-pass"}, "email"),
            ({"email": "a@example.com", "password": "short"}, "password"),
            ({"email": "a@example.com", "password": "x" * 73}, "password"),
            ({"email": "a@example.com", "password": "é" * 37}, "password"),  # 74 bytes
        ],
    )
    async def test_invalid_registration_is_422(self, client, body, field) -> None:
        response = await client.post("/auth/register", json=body)
        assert response.status_code == 422
        assert field in response.json()["detail"]

    async def test_wrong_password_is_401(self, client) -> None:
        await factories.account(email="bob@example.com")
        response = await client.post(
            "/auth/login", data={"username": "bob@example.com", "password": "wrong-password"}
        )
        assert response.status_code == 401
        assert response.json()["detail"] == "Incorrect e-mail or password."
        unknown = await client.post(
            "/auth/login", data={"username": "nobody@example.com", "password": "wrong-password"}
        )
        assert unknown.status_code == 401


def _token(claims: dict[str, object], key: str = SECRET, algorithm: str = ALGORITHM) -> str:
    return str(jwt.encode(claims, key, algorithm=algorithm))


def _unsigned(claims: dict[str, object]) -> str:
    import base64
    import json

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class TestTokens:
    @pytest.fixture
    async def user(self) -> factories.Account:
        return await factories.account()

    def future(self) -> datetime:
        return datetime.now(UTC) + timedelta(minutes=5)

    async def test_valid_token_works(self, client, user) -> None:
        assert (await client.get("/auth/me", headers=user.headers)).status_code == 200

    async def test_missing_token(self, client) -> None:
        response = await client.get("/auth/me")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_expired(self, client, user) -> None:
        token = create_access_token(user.id, minutes=-1)
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

    async def test_forged_signature(self, client, user) -> None:
        token = _token({"sub": str(user.id), "exp": self.future(), "typ": "access"}, key="x" * 40)
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

    async def test_alg_none(self, client, user) -> None:
        token = _unsigned(
            {"sub": str(user.id), "exp": int(self.future().timestamp()), "typ": "access"}
        )
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

    async def test_missing_sub(self, client, user) -> None:
        del user
        token = _token({"exp": self.future(), "typ": "access"})
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

    async def test_deleted_user(self, client) -> None:
        token = create_access_token(987654)
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

    async def test_garbage(self, client) -> None:
        assert (await client.get("/auth/me", headers=bearer("not.a.jwt"))).status_code == 401


class TestRoles:
    async def test_customer_cannot_create_events(self, client) -> None:
        customer = await factories.account()
        spec = factories.seated_spec().model_dump(mode="json")
        response = await client.post("/admin/events", json=spec, headers=customer.headers)
        assert response.status_code == 403
        assert "organizer" in response.json()["detail"]

    async def test_admin_promotes_and_the_new_role_applies(self, client) -> None:
        admin = await factories.account(Role.ADMIN)
        customer = await factories.account()
        promoted = await client.post(
            f"/admin/users/{customer.id}/role", json={"role": "organizer"}, headers=admin.headers
        )
        assert promoted.status_code == 200
        assert promoted.json()["role"] == "organizer"
        spec = factories.seated_spec().model_dump(mode="json")
        created = await client.post("/admin/events", json=spec, headers=customer.headers)
        assert created.status_code == 201

    async def test_only_admins_change_roles(self, client) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        response = await client.post(
            f"/admin/users/{organizer.id}/role", json={"role": "admin"}, headers=organizer.headers
        )
        assert response.status_code == 403

    async def test_admin_cannot_demote_self(self, client) -> None:
        admin = await factories.account(Role.ADMIN)
        response = await client.post(
            f"/admin/users/{admin.id}/role", json={"role": "customer"}, headers=admin.headers
        )
        assert response.status_code == 409

    async def test_unknown_user_and_role(self, client) -> None:
        admin = await factories.account(Role.ADMIN)
        missing = await client.post(
            "/admin/users/9999/role", json={"role": "organizer"}, headers=admin.headers
        )
        assert missing.status_code == 404
        bad = await client.post(
            f"/admin/users/{admin.id}/role", json={"role": "king"}, headers=admin.headers
        )
        assert bad.status_code == 422


class TestOwnership:
    """Every `{id}` route, called by someone who does not own the resource."""

    async def test_bookings_of_others_are_404(self, client) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        owner, stranger = await factories.account(), await factories.account()
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        held = await client.post(
            "/bookings/", json={"event_id": event_id, "quantity": 1}, headers=owner.headers
        )
        booking_id = held.json()["id"]
        for method, url in [
            ("GET", f"/bookings/{booking_id}"),
            ("POST", f"/bookings/{booking_id}/confirm"),
            ("POST", f"/bookings/{booking_id}/cancel"),
        ]:
            response = await client.request(method, url, headers=stranger.headers)
            assert response.status_code == 404, (method, url, response.status_code)
        # The organizer of the event does not see the customer's booking either.
        assert (
            await client.get(f"/bookings/{booking_id}", headers=organizer.headers)
        ).status_code == 404
        assert (
            await client.get(f"/bookings/{booking_id}", headers=owner.headers)
        ).status_code == 200
        mine = await client.get("/bookings/my-bookings", headers=stranger.headers)
        assert mine.json()["total"] == 0

    async def test_events_of_other_organizers_are_403(self, client) -> None:
        owner, other = (
            await factories.account(Role.ORGANIZER),
            await factories.account(Role.ORGANIZER),
        )
        customer = await factories.account()
        event_id = await factories.event(owner, factories.ga_spec(capacity=5), publish=False)
        calls = [
            ("GET", f"/admin/events/{event_id}", None),
            ("PUT", f"/admin/events/{event_id}", {"name": "Mine now"}),
            ("POST", f"/admin/events/{event_id}/publish", None),
            ("DELETE", f"/admin/events/{event_id}", None),
        ]
        for method, url, body in calls:
            for intruder in (other, customer):
                response = await client.request(method, url, json=body, headers=intruder.headers)
                assert response.status_code in (403, 404), (method, url, response.status_code)
        assert (await client.get(f"/events/{event_id}")).status_code == 404  # a draft is not public
        detail = await client.get(f"/admin/events/{event_id}", headers=owner.headers)
        assert detail.json()["status"] == "draft"
