"""Redis-backed rate limits: 429 with Retry-After."""

from app.core.config import get_settings
from app.models import Role
from tests import factories


async def test_sixth_failed_login_in_a_minute_is_429(client) -> None:
    await factories.account(email="target@example.com")
    bad = {"username": "target@example.com", "password": "wrong-password"}
    for _ in range(5):
        assert (await client.post("/auth/login", data=bad)).status_code == 401
    sixth = await client.post("/auth/login", data=bad)
    assert sixth.status_code == 429
    assert sixth.json()["code"] == "rate_limited"
    assert 1 <= int(sixth.headers["retry-after"]) <= 60
    good = {"username": "target@example.com", "password": factories.PASSWORD}
    assert (
        await client.post("/auth/login", data=good)
    ).status_code == 429  # account is cooling down
    other = await factories.account(email="bystander@example.com")
    del other
    ok = {"username": "bystander@example.com", "password": factories.PASSWORD}
    assert (await client.post("/auth/login", data=ok)).status_code == 200  # per account


async def test_register_is_limited_per_address(client) -> None:
    statuses = []
    for n in range(11):
        body = {"email": f"new{n}@example.com", "password": "long-enough-pw"}
        statuses.append((await client.post("/auth/register", json=body)).status_code)
    assert statuses == [201] * 10 + [429]


async def test_holds_are_limited_per_user(client) -> None:
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.event(organizer, factories.ga_spec(capacity=100))
    body = {"event_id": event_id, "quantity": 1, "section": "nope"}
    statuses = [
        (await client.post("/bookings/", json=body, headers=buyer.headers)).status_code
        for _ in range(31)
    ]
    assert statuses == [409] * 30 + [429]


async def test_switched_off(client) -> None:
    await factories.account(email="free@example.com")
    get_settings().rate_limit_enabled = False
    try:
        bad = {"username": "free@example.com", "password": "wrong-password"}
        for _ in range(8):
            assert (await client.post("/auth/login", data=bad)).status_code == 401
    finally:
        get_settings().rate_limit_enabled = True
