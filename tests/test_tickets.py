"""Ed25519 tickets: verified with the published keys alone, rotation, signed revocation
lists, and the offline verifier (a subprocess with no database and no secret)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core import keystore, ticket_codes
from app.core.config import get_settings
from app.core.db import db
from app.models import Role
from tests import factories

ROOT = Path(__file__).resolve().parent.parent


async def _sell(client: httpx.AsyncClient, event_id: int, quantity: int = 2) -> dict[str, Any]:
    """A confirmed booking of `quantity` seats, by a new customer."""
    buyer = await factories.account()
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": quantity}, headers=buyer.headers
    )
    assert held.status_code == 201, held.text
    confirmed = await client.post(f"/bookings/{held.json()['id']}/confirm", headers=buyer.headers)
    assert confirmed.status_code == 200, confirmed.text
    return {**confirmed.json(), "buyer": buyer}


async def _keys(client: httpx.AsyncClient, event_id: int) -> dict[str, Any]:
    response = await client.get(f"/events/{event_id}/ticket-keys")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _tamper(code: str, index: int) -> str:
    """`code` with the dot-separated field `index` changed (still well-formed)."""
    parts = code.split(".")
    field = parts[index]
    if field.isdigit():
        parts[index] = str(int(field) + 1)
    else:
        parts[index] = ("B" if field[0] != "B" else "C") + field[1:]
    return ".".join(parts)


@pytest.fixture
async def organizer_event(organizer: factories.Account) -> tuple[factories.Account, int]:
    return organizer, await factories.event(organizer, factories.ga_spec(capacity=20))


class TestSignatures:
    async def test_codes_verify_with_the_published_public_keys_alone(
        self, client, organizer_event
    ) -> None:
        _, event_id = organizer_event
        booking = await _sell(client, event_id)
        document = await _keys(client, event_id)
        assert "private" not in json.dumps(document)
        assert [k["alg"] for k in document["keys"]] == ["Ed25519"]
        assert document["keys"][0]["retired_at"] is None
        keys_event, keys = ticket_codes.load_keys(document)
        assert keys_event == event_id
        for ticket in booking["tickets"]:
            qr = ticket["qr_code_data"]
            assert qr.startswith("EVT2.")
            assert len(qr) <= 200
            claim = ticket_codes.verify(qr, keys)
            assert (claim.event_id, claim.seat_id, claim.code) == (
                event_id,
                ticket["seat_id"],
                ticket["code"],
            )

    async def test_tampered_codes_and_other_events_keys_fail(self, client, organizer_event) -> None:
        organizer, event_id = organizer_event
        qr = (await _sell(client, event_id))["tickets"][0]["qr_code_data"]
        _, keys = ticket_codes.load_keys(await _keys(client, event_id))
        ticket_codes.verify(qr, keys)  # the genuine code passes
        for index in (2, 3, 4, 5):  # event, seat, code, signature
            with pytest.raises(ticket_codes.InvalidTicket):
                ticket_codes.verify(_tamper(qr, index), keys)
        other = await factories.event(organizer, factories.ga_spec(capacity=5))
        _, other_keys = ticket_codes.load_keys(await _keys(client, other))
        with pytest.raises(ticket_codes.InvalidTicket, match="unknown key"):
            ticket_codes.verify(qr, other_keys)
        refused = await client.post(
            "/admin/checkin", json={"qr_code_data": _tamper(qr, 5)}, headers=organizer.headers
        )
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_ticket")

    async def test_private_keys_are_sealed_at_rest(
        self, client, organizer_event, monkeypatch
    ) -> None:
        _, event_id = organizer_event
        qr = (await _sell(client, event_id, 1))["tickets"][0]["qr_code_data"]
        async with db.engine.connect() as conn:
            kid, sealed = (
                await conn.execute(
                    text("SELECT kid, private_key_sealed FROM ticket_keys WHERE event_id = :e"),
                    {"e": event_id},
                )
            ).one()
        private = keystore.unseal(sealed, event_id, kid)
        assert private.private_bytes_raw() not in sealed
        _, _, event, seat, code, _ = qr.split(".")
        resigned = ticket_codes.sign_ticket(private, kid, int(event), int(seat), code)
        assert resigned == qr  # the sealed key is the one that signed (Ed25519 is deterministic)
        with pytest.raises(keystore.SealedKeyUnreadable):
            keystore.unseal(sealed, event_id + 1, kid)  # bound to its row
        monkeypatch.setattr(get_settings(), "secret_key", "another-secret-" + "x" * 40)
        with pytest.raises(keystore.SealedKeyUnreadable):
            keystore.unseal(sealed, event_id, kid)


class TestRotation:
    async def test_old_tickets_stay_valid_and_new_ones_use_the_new_key(
        self, client, organizer_event
    ) -> None:
        organizer, event_id = organizer_event
        before = await _sell(client, event_id)
        old_kid = before["tickets"][0]["qr_code_data"].split(".")[1]
        rotated = await client.post(
            f"/admin/events/{event_id}/ticket-keys/rotate", headers=organizer.headers
        )
        assert rotated.status_code == 200, rotated.text
        after = await _sell(client, event_id)
        new_kid = after["tickets"][0]["qr_code_data"].split(".")[1]
        assert new_kid != old_kid
        document = await _keys(client, event_id)
        by_kid = {k["kid"]: k for k in document["keys"]}
        assert by_kid[old_kid]["retired_at"] is not None
        assert by_kid[new_kid]["retired_at"] is None
        assert rotated.json()["keys"] == document["keys"]
        _, keys = ticket_codes.load_keys(document)
        for ticket in before["tickets"] + after["tickets"]:
            ticket_codes.verify(ticket["qr_code_data"], keys)
        admitted = await client.post(
            "/admin/checkin",
            json={"qr_code_data": before["tickets"][0]["qr_code_data"]},
            headers=organizer.headers,
        )
        assert admitted.status_code == 200, admitted.text

    async def test_a_changed_secret_key_retires_the_sealed_key(
        self, client, organizer_event, monkeypatch
    ) -> None:
        _, event_id = organizer_event
        before = await _sell(client, event_id, 1)
        monkeypatch.setattr(get_settings(), "secret_key", "a-new-secret-key-" + "y" * 40)
        after = await _sell(client, event_id, 1)
        old_kid, new_kid = (b["tickets"][0]["qr_code_data"].split(".")[1] for b in (before, after))
        assert old_kid != new_kid
        document = await _keys(client, event_id)
        assert [k["retired_at"] is None for k in document["keys"]] == [False, True]
        _, keys = ticket_codes.load_keys(document)
        for booking in (before, after):
            ticket_codes.verify(booking["tickets"][0]["qr_code_data"], keys)

    async def test_only_the_owner_or_an_admin_rotates(self, client, organizer_event) -> None:
        _, event_id = organizer_event
        path = f"/admin/events/{event_id}/ticket-keys/rotate"
        stranger = await factories.account(Role.ORGANIZER)
        customer = await factories.account()
        assert (await client.post(path, headers=stranger.headers)).status_code == 403
        assert (await client.post(path, headers=customer.headers)).status_code == 403
        assert (await client.post(path)).status_code == 401
        admin = await factories.account(Role.ADMIN)
        assert (await client.post(path, headers=admin.headers)).status_code == 200
        assert (
            await client.post("/admin/events/999999/ticket-keys/rotate", headers=admin.headers)
        ).status_code == 404


class TestRevocations:
    async def test_cancelled_tickets_listed_incrementally_and_signed(
        self, client, organizer_event
    ) -> None:
        _, event_id = organizer_event
        first, second, kept = [await _sell(client, event_id) for _ in range(3)]
        empty = (await client.get(f"/events/{event_id}/revoked-tickets")).json()
        assert (empty["revoked"], empty["next"], empty["more"]) == ([], 0, False)
        await client.post(f"/bookings/{first['id']}/cancel", headers=first["buyer"].headers)
        page = (await client.get(f"/events/{event_id}/revoked-tickets")).json()
        _, keys = ticket_codes.load_keys(await _keys(client, event_id))
        ticket_codes.verify_document(page, keys)
        assert {r["code"] for r in page["revoked"]} == {t["code"] for t in first["tickets"]}
        await client.post(f"/bookings/{second['id']}/cancel", headers=second["buyer"].headers)
        newer = (
            await client.get(f"/events/{event_id}/revoked-tickets", params={"since": page["next"]})
        ).json()
        ticket_codes.verify_document(newer, keys)
        assert {r["code"] for r in newer["revoked"]} == {t["code"] for t in second["tickets"]}
        assert min(r["seq"] for r in newer["revoked"]) > page["next"]
        revoked = ticket_codes.revoked_codes([page, newer], event_id, keys)
        assert not revoked & {t["code"] for t in kept["tickets"]}
        forged = {**newer, "revoked": newer["revoked"][:1]}
        with pytest.raises(ticket_codes.InvalidTicket, match="bad signature"):
            ticket_codes.verify_document(forged, keys)

    async def test_pages_and_event_cancellation(self, client, organizer_event) -> None:
        organizer, event_id = organizer_event
        sold = [await _sell(client, event_id) for _ in range(2)]
        cancelled = await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
        assert cancelled.status_code == 200
        codes, since, pages = set(), 0, 0
        while True:
            page = (
                await client.get(
                    f"/events/{event_id}/revoked-tickets", params={"since": since, "limit": 1}
                )
            ).json()
            codes |= {r["code"] for r in page["revoked"]}
            since, pages = page["next"], pages + 1
            if not page["more"]:
                break
        assert codes == {t["code"] for b in sold for t in b["tickets"]}
        assert pages == 4

    async def test_fast_path_leaves_ticket_routes_to_the_app(self, client, organizer_event) -> None:
        _, event_id = organizer_event
        for _ in range(2):  # the second read of the detail is a cache hit, before FastAPI
            detail = await client.get(f"/events/{event_id}")
        assert detail.headers.get("x-cache") == "hit"
        for path in ("ticket-keys", "revoked-tickets"):
            response = await client.get(f"/events/{event_id}/{path}")
            assert response.status_code == 200, (path, response.text)
            assert response.json()["event_id"] == event_id
            assert "x-cache" not in response.headers
        draft = await factories.event(
            await factories.account(Role.ORGANIZER), factories.ga_spec(5), publish=False
        )
        assert (await client.get(f"/events/{draft}/ticket-keys")).status_code == 404


def _verify_offline(tmp_path: Path, code: str, keys: Any, revoked: Any = None) -> tuple[int, str]:
    """`python -m app.cli verify-ticket` in a process with no reachable database or Redis
    and no usable secret (production settings refuse it: any settings read would fail)."""
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    args = [sys.executable, "-m", "app.cli", "verify-ticket", "--keys", str(tmp_path / "keys.json")]
    if revoked is not None:
        (tmp_path / "revoked.json").write_text(json.dumps(revoked))
        args += ["--revoked", str(tmp_path / "revoked.json")]
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env.update(
        APP_ENV="production",
        SECRET_KEY="",
        DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:9/nowhere",
        REDIS_URL="redis://127.0.0.1:9/0",
    )
    done = subprocess.run(
        [*args, code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, (done.stdout + done.stderr).strip()


class TestOfflineVerifier:
    async def test_accepts_good_rejects_tampered_and_revoked_without_a_database(
        self, client, organizer_event, tmp_path
    ) -> None:
        _, event_id = organizer_event
        good, cancelled = await _sell(client, event_id, 1), await _sell(client, event_id, 1)
        await client.post(f"/bookings/{cancelled['id']}/cancel", headers=cancelled["buyer"].headers)
        keys = await _keys(client, event_id)
        revoked = (await client.get(f"/events/{event_id}/revoked-tickets")).json()
        good_qr = good["tickets"][0]["qr_code_data"]
        rc, out = _verify_offline(tmp_path, good_qr, keys, revoked)
        assert (rc, out.splitlines()) == (0, [out])
        assert out.startswith("valid:"), out
        assert good["tickets"][0]["code"] in out
        rc, out = _verify_offline(tmp_path, _tamper(good_qr, 5), keys)
        assert (rc, out) == (1, "invalid: bad signature")
        cancelled_qr = cancelled["tickets"][0]["qr_code_data"]
        assert _verify_offline(tmp_path, cancelled_qr, keys)[0] == 0  # no list: not known
        rc, out = _verify_offline(tmp_path, cancelled_qr, keys, [revoked])
        assert (rc, "revoked" in out) == (1, True), out
        forged_list = {**revoked, "revoked": []}
        rc, out = _verify_offline(tmp_path, cancelled_qr, keys, forged_list)
        assert (rc, "bad signature" in out) == (1, True), out

    async def test_keys_of_another_event_and_unreadable_files(
        self, client, organizer_event, tmp_path
    ) -> None:
        organizer, event_id = organizer_event
        qr = (await _sell(client, event_id, 1))["tickets"][0]["qr_code_data"]
        other = await factories.event(organizer, factories.ga_spec(capacity=5))
        rc, out = _verify_offline(tmp_path, qr, await _keys(client, other))
        assert (rc, out.startswith("invalid: signed by unknown key")) == (1, True), out
        rc, out = _verify_offline(tmp_path, qr, {"nothing": "here"})
        assert (rc, out.startswith("error:")) == (2, True), out
