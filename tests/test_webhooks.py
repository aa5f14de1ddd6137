"""Organizer webhooks against a real HTTP receiver and a real worker: signed deliveries,
retries with backoff, a worker killed mid-delivery, SSRF refusal, ownership, auto-disable."""

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import db, transaction
from app.infra import outbox, ssrf
from app.models import Role
from app.services import webhook_delivery, webhooks
from tests import factories
from tests.jobpath import WORKER_ENV, eventually, notifications, scalar, send
from tests.servers import WorkerProcess

HOOK_ENV = {**WORKER_ENV, "WEBHOOK_TIMEOUT_S": "1", "WEBHOOK_RETRY_BASE_S": "0.5"}


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int


@dataclass
class Receiver:
    """A real HTTP server on a free port: records every request, answers the scripted
    status codes in turn (then 200), and dedupes by Evently-Delivery as a receiver should."""

    script: list[int] = field(default_factory=list)
    hang_first_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)
    arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        status = self.script.pop(0) if self.script else 200
        self.seen.append(Seen(headers, body, time.monotonic(), status))
        self.arrived.set()
        delivery = headers["Evently-Delivery"]
        if status == 200 and delivery not in self.processed:  # a duplicate is acknowledged,
            self.processed[delivery] = 1  # not processed again
        return status

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hang = receiver.hang_first_s if not receiver.seen else 0.0
                status = receiver.answer(dict(self.headers), body)
                time.sleep(hang)  # the worker may be killed meanwhile
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                del args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerProcess]:
    process = WorkerProcess(env=HOOK_ENV)
    process.start()
    yield process
    process.stop()


@asynccontextmanager
async def beat(every: float = 0.3) -> AsyncIterator[None]:
    """What Celery beat does in production: the sweep of due deliveries, sent regularly."""

    async def tick() -> None:
        while True:
            await send("evently.webhook_sweep")
            await asyncio.sleep(every)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver's check, as the README gives it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) < tolerance_s
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


async def subscribe(client, owner, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    body = {"url": url, "events": events, **extra}
    response = await client.post("/admin/webhooks", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def book(client, event_id: int, quantity: int = 1) -> int:
    buyer = await factories.account()
    held = await client.post(
        "/bookings/", json={"event_id": event_id, "quantity": quantity}, headers=buyer.headers
    )
    booking_id = int(held.json()["id"])
    confirmed = await client.post(f"/bookings/{booking_id}/confirm", headers=buyer.headers)
    assert confirmed.status_code == 200
    return booking_id


async def log_of(client, owner, hook_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/admin/webhooks/{hook_id}/deliveries", headers=owner.headers)
    assert response.status_code == 200
    return list(response.json()["items"])


async def delivered(client, owner, hook_id: int, n: int = 1) -> bool:
    rows = await log_of(client, owner, hook_id)
    return sum(row["status"] == "delivered" for row in rows) >= n


class TestDelivery:
    async def test_signed_deliveries_of_a_sale_and_its_sell_out(
        self, client, worker, receiver
    ) -> None:
        del worker
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=2))
        hook = await subscribe(
            client, organizer, receiver.url, ["booking.confirmed", "event.sold_out"]
        )
        assert hook["secret"].startswith("whsec_")
        shown = await client.get(f"/admin/webhooks/{hook['id']}", headers=organizer.headers)
        assert "secret" not in shown.json()  # shown once, on creation
        booking_id = await book(client, event_id, quantity=2)
        await eventually(lambda: delivered(client, organizer, hook["id"], 2))

        by_type = {s.headers["Evently-Event"]: s for s in receiver.seen}
        assert sorted(by_type) == ["booking.confirmed", "event.sold_out"]
        sale = by_type["booking.confirmed"]
        assert verify(hook["secret"], sale.headers["Evently-Signature"], sale.body)
        assert not verify("whsec_another", sale.headers["Evently-Signature"], sale.body)
        assert not verify(hook["secret"], sale.headers["Evently-Signature"], sale.body + b" ")
        payload = json.loads(sale.body)
        assert payload["data"]["booking_id"] == booking_id
        assert payload["data"]["seats"] == ["GA-1", "GA-2"]
        logged = {row["event_type"]: row for row in await log_of(client, organizer, hook["id"])}
        assert sale.headers["Evently-Delivery"] == str(logged["booking.confirmed"]["id"])
        assert logged["booking.confirmed"]["attempts"] == 1
        assert logged["booking.confirmed"]["last_status_code"] == 200

    async def test_a_500_is_retried_after_the_backoff_then_delivered(
        self, client, worker, receiver
    ) -> None:
        del worker
        receiver.script = [500]
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        hook = await subscribe(client, organizer, receiver.url, ["booking.confirmed"])
        await book(client, event_id)
        async with beat():
            await eventually(lambda: delivered(client, organizer, hook["id"]))
        first, second = receiver.seen
        assert (first.answered, second.answered) == (500, 200)
        assert first.headers["Evently-Delivery"] == second.headers["Evently-Delivery"]
        assert second.at - first.at >= 0.5  # WEBHOOK_RETRY_BASE_S
        (row,) = await log_of(client, organizer, hook["id"])
        assert (row["attempts"], row["last_status_code"], row["last_error"]) == (2, 200, None)
        assert row["delivered_at"] is not None
        assert row["next_attempt_at"] is None

    async def test_a_worker_killed_mid_delivery_sends_again_under_the_same_id(
        self, client, worker, receiver
    ) -> None:
        receiver.hang_first_s = 0.8
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        hook = await subscribe(client, organizer, receiver.url, ["booking.confirmed"])
        await book(client, event_id)
        assert await asyncio.to_thread(receiver.arrived.wait, 15)
        worker.kill()  # the POST is out, its answer never recorded
        worker.start()
        async with beat():
            await eventually(lambda: delivered(client, organizer, hook["id"]), within=20)
            await asyncio.sleep(1.0)  # more sweeps: nothing further is sent
        ids = {s.headers["Evently-Delivery"] for s in receiver.seen}
        assert len(ids) == 1
        assert len(receiver.seen) >= 2
        assert receiver.processed == {ids.pop(): 1}  # the receiver's dedupe: processed once
        assert await scalar("SELECT count(*) FROM webhook_deliveries") == 1
        assert sum(s.answered == 200 for s in receiver.seen) == len(receiver.seen)

    async def test_a_trigger_run_twice_creates_one_delivery(self, client, receiver) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        hook = await subscribe(client, organizer, receiver.url, ["event.cancelled"])
        for _ in range(2):
            async with transaction() as uow:
                await webhooks.emit(uow, "event.cancelled", event_id, str(event_id), {})
        cancelled = await client.delete(f"/admin/events/{event_id}", headers=organizer.headers)
        assert cancelled.status_code == 200
        assert len(await log_of(client, organizer, hook["id"])) == 1
        assert await scalar("SELECT count(*) FROM outbox WHERE task = 'webhook_deliver'") == 1


class TestAutoDisable:
    async def test_failing_past_the_window_disables_and_notifies_then_enable_and_redeliver(
        self, client, worker, receiver
    ) -> None:
        del worker
        receiver.script = [500] * 100
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        hook = await subscribe(client, organizer, receiver.url, ["booking.confirmed"])
        path = f"/admin/webhooks/{hook['id']}"
        await book(client, event_id)
        await eventually(lambda: _attempted(client, organizer, hook["id"]))
        async with db.engine.begin() as conn:  # 25 h have passed since the first attempt
            await conn.execute(
                text(
                    "UPDATE webhook_deliveries SET first_attempt_at = now() - interval '25 h',"
                    " next_attempt_at = now()"
                )
            )
        async with beat():
            await eventually(lambda: _disabled(client, organizer, path))
        (row,) = await log_of(client, organizer, hook["id"])
        assert row["status"] == "failed"
        assert row["last_status_code"] == 500
        assert await notifications(organizer.id, "webhook.disabled") == 1
        await book(client, event_id)  # a disabled webhook is not sent anything
        assert len(await log_of(client, organizer, hook["id"])) == 1

        refused = await client.post(
            f"{path}/deliveries/{row['id']}/redeliver", headers=organizer.headers
        )
        assert refused.status_code == 409
        enabled = await client.post(f"{path}/enable", headers=organizer.headers)
        assert enabled.json()["enabled"] is True
        receiver.script = []
        again = await client.post(
            f"{path}/deliveries/{row['id']}/redeliver", headers=organizer.headers
        )
        assert again.status_code == 202
        await eventually(lambda: delivered(client, organizer, hook["id"]))


async def _attempted(client, owner, hook_id: int) -> bool:
    return any(row["attempts"] >= 1 for row in await log_of(client, owner, hook_id))


async def _disabled(client, owner, path: str) -> bool:
    return (await client.get(path, headers=owner.headers)).json()["enabled"] is False


class TestSsrf:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8000/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/hook",
            "http://[::ffff:192.168.0.1]/hook",
            "http://100.64.0.1/hook",
        ],
    )
    async def test_private_addresses_are_refused_in_production(
        self, client, monkeypatch, url: str
    ) -> None:
        monkeypatch.setattr(get_settings(), "app_env", "production")
        organizer = await factories.account(Role.ORGANIZER)
        body = {"url": url, "events": ["booking.confirmed"]}
        response = await client.post("/admin/webhooks", json=body, headers=organizer.headers)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "unsafe_url"

    async def test_public_address_accepted_and_other_schemes_refused(
        self, client, monkeypatch
    ) -> None:
        monkeypatch.setattr(get_settings(), "app_env", "production")
        organizer = await factories.account(Role.ORGANIZER)
        public = {"url": "https://93.184.216.34/hook", "events": ["event.updated"]}
        assert (
            await client.post("/admin/webhooks", json=public, headers=organizer.headers)
        ).status_code == 201
        ftp = {"url": "ftp://93.184.216.34/x", "events": ["event.updated"]}
        assert (
            await client.post("/admin/webhooks", json=ftp, headers=organizer.headers)
        ).status_code == 422

    async def test_allowed_in_tests_and_checked_again_at_send_time_in_production(
        self, client, monkeypatch, receiver
    ) -> None:
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.event(organizer, factories.ga_spec(capacity=5))
        hook = await subscribe(client, organizer, receiver.url, ["event.updated"])  # test: allowed

        async def broker_down(job_id: int) -> None:
            raise ConnectionError(job_id)  # keep the job from a running worker: sent here

        monkeypatch.setattr(outbox, "send_job", broker_down)
        async with transaction() as uow:
            (delivery_id,) = await webhooks.emit(uow, "event.updated", event_id, "x", {})
        monkeypatch.setattr(get_settings(), "app_env", "production")  # as if DNS changed
        assert await webhook_delivery.attempt(delivery_id) == "retry"
        (row,) = await log_of(client, organizer, hook["id"])
        assert row["last_error"].startswith("refused:")
        assert receiver.seen == []

    def test_address_rules(self) -> None:
        import ipaddress

        assert ssrf.is_public(ipaddress.ip_address("93.184.216.34"))
        for private in ("::ffff:10.0.0.1", "fe80::1", "fc00::1", "0.0.0.0", "224.0.0.1"):
            assert not ssrf.is_public(ipaddress.ip_address(private)), private


class TestOwnership:
    async def test_other_organizers_get_404_customers_403_admins_see_all(
        self, client, receiver
    ) -> None:
        owner, other = (
            await factories.account(Role.ORGANIZER),
            await factories.account(Role.ORGANIZER),
        )
        admin, customer = await factories.account(Role.ADMIN), await factories.account()
        event_id = await factories.event(owner, factories.ga_spec(capacity=5))
        hook = await subscribe(
            client, owner, receiver.url, ["booking.confirmed"], event_id=event_id
        )
        async with transaction() as uow:
            (delivery_id,) = await webhooks.emit(uow, "booking.confirmed", event_id, "1", {})
        path = f"/admin/webhooks/{hook['id']}"
        for method, url in [
            ("GET", path),
            ("GET", f"{path}/deliveries"),
            ("POST", f"{path}/enable"),
            ("POST", f"{path}/deliveries/{delivery_id}/redeliver"),
            ("DELETE", path),
        ]:
            response = await client.request(method, url, headers=other.headers)
            assert response.status_code == 404, (method, url)
        theirs = {"url": receiver.url, "events": ["booking.confirmed"], "event_id": event_id}
        assert (
            await client.post("/admin/webhooks", json=theirs, headers=other.headers)
        ).status_code == 404
        assert (await client.get("/admin/webhooks", headers=other.headers)).json()["total"] == 0
        assert (await client.get(path, headers=customer.headers)).status_code == 403
        assert (await client.get(path, headers=admin.headers)).status_code == 200
        assert (await client.delete(path, headers=owner.headers)).status_code == 204
        assert (await client.get(path, headers=owner.headers)).status_code == 404
