"""Sending webhook deliveries: signed POSTs, retried with backoff, never inside a transaction.

One attempt is three steps, and only the middle one talks to the receiver:

1. claim the delivery in a short transaction (one UPDATE: due, not leased, webhook
   enabled; it takes a lease and counts the attempt), and commit;
2. POST the frozen body with no database connection held, bounded by WEBHOOK_TIMEOUT_S;
3. record the outcome in a new short transaction: delivered, or due again after a
   backoff, or (past WEBHOOK_RETRY_WINDOW_S since the first attempt) failed, with the
   webhook disabled and its owner notified.

The first attempt runs right after the outbox job that announces the delivery commits;
every later one is picked up by the beat sweep (`sweep`), because the row itself is the
schedule: nothing to lose in a broker or a worker's memory. A sender killed between 2 and
3 leaves a lease that lapses, and the delivery is sent again with the same
`Evently-Delivery` id: at least once, never "exactly once" over HTTP.
"""

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import func

from app.core.config import get_settings
from app.core.db import UnitOfWork, transaction, unit_of_work
from app.crud import webhooks as crud
from app.infra import ssrf
from app.infra.outbox import Handler
from app.services import notifications, webhooks

log = structlog.get_logger("evently.webhooks")

WEBHOOK_DISABLED = "webhook.disabled"
SWEEP_BATCH = 100
SENDERS = 8  # deliveries one sweep sends at the same time
USER_AGENT = "Evently-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`Evently-Signature`: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as Stripe signs."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempt: int) -> timedelta:
    """Wait after failed attempt n: base, 2 x base, 4 x base, ... capped."""
    settings = get_settings()
    seconds = settings.webhook_retry_base_s * 2 ** min(attempt - 1, 30)
    return timedelta(seconds=min(seconds, settings.webhook_retry_max_s))


def _lease() -> timedelta:
    # Longer than one attempt can take (the POST is cut at the timeout), so a lease lapses
    # only when its sender died.
    return timedelta(seconds=2 * get_settings().webhook_timeout_s + 1)


async def deliver_job(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    """Outbox job: the first attempt, once the job's own transaction has committed (the
    POST must not run inside it). If this process dies first, the sweep sends it."""
    del job_id
    delivery_id = int(payload["delivery_id"])

    async def first_attempt() -> None:
        await attempt(delivery_id)

    uow.after_commit(first_attempt)


async def attempt(delivery_id: int) -> str:
    """One attempt at one delivery, if it is due; returns what happened."""
    async with transaction() as uow:
        claimed = await crud.claim(uow.session, delivery_id, _lease())
    if claimed is None:
        return "not due"
    outcome = await _post(claimed)
    async with transaction() as uow:
        result = await _record(uow, claimed, outcome)
    log.info(
        "webhook_attempt",
        delivery_id=claimed.id,
        webhook_id=claimed.webhook_id,
        attempt=claimed.attempt,
        status_code=outcome.status_code,
        error=outcome.error,
        result=result,
    )
    return result


def _body(claimed: crud.Claimed) -> bytes:
    return json.dumps(claimed.payload, separators=(",", ":"), sort_keys=True).encode()


async def _post(claimed: crud.Claimed) -> Outcome:
    body = _body(claimed)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Evently-Signature": sign(claimed.secret, int(time.time()), body),
        "Evently-Event": claimed.event_type,
        "Evently-Delivery": str(claimed.id),
    }
    timeout = get_settings().webhook_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await _send(claimed.url, headers, body)
    except ssrf.UnsafeUrl as exc:
        return Outcome(None, f"refused: {exc}")
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:300])


async def _send(url: str, headers: dict[str, str], body: bytes) -> Outcome:
    """The POST. In production the URL is checked again now and pinned to the address the
    check saw (DNS rebinding). Redirects are not followed: a 3xx is a failed attempt."""
    extensions: dict[str, Any] = {}
    if get_settings().app_env == "production":
        target = await ssrf.pinned(url)
        url, headers = target.url, headers | {"Host": target.host}
        extensions["sni_hostname"] = target.server_name
    timeout = get_settings().webhook_timeout_s  # per operation; the caller bounds the total
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        # Streamed and closed unread: the receiver's body is not ours to download.
        async with client.stream(
            "POST", url, content=body, headers=headers, extensions=extensions
        ) as response:
            code = response.status_code
    return Outcome(code, None if 200 <= code < 300 else f"HTTP {code}")


async def _record(uow: UnitOfWork, claimed: crud.Claimed, outcome: Outcome) -> str:
    values: dict[str, Any] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.ok:
        values |= {"status": crud.DELIVERED, "delivered_at": func.now(), "next_attempt_at": None}
        await crud.record(uow.session, claimed, **values)
        return "delivered"
    window = timedelta(seconds=get_settings().webhook_retry_window_s)
    now = datetime.now(UTC)
    if now - claimed.first_attempt_at < window:
        values["next_attempt_at"] = now + backoff(claimed.attempt)
        await crud.record(uow.session, claimed, **values)
        return "retry"
    values |= {"status": crud.FAILED, "next_attempt_at": None}
    if await crud.record(uow.session, claimed, **values):
        await _disable(uow, claimed, outcome)
    return "failed"


async def _disable(uow: UnitOfWork, claimed: crud.Claimed, outcome: Outcome) -> None:
    """Out of retries: the webhook stops, and its owner hears why (once)."""
    hours = get_settings().webhook_retry_window_s / 3600
    reason = (
        f"Delivery {claimed.id} ({claimed.event_type}) failed for {hours:g} h "
        f"({claimed.attempt} attempts; last: {outcome.error})."
    )
    owner_id = await crud.disable(uow.session, claimed.webhook_id, reason)
    if owner_id is None:
        return
    await notifications.send(
        uow,
        owner_id,
        WEBHOOK_DISABLED,
        f"Webhook {claimed.webhook_id} was disabled",
        f"Your webhook to {claimed.url} was disabled. {reason} Fix the receiver, then "
        f"re-enable it: POST /admin/webhooks/{claimed.webhook_id}/enable.",
        f"{WEBHOOK_DISABLED}:{claimed.webhook_id}:{claimed.id}",
    )


async def sweep() -> int:
    """Beat: send every delivery that is due (retries, and first attempts a crash lost);
    returns how many were delivered."""
    async with unit_of_work() as uow:  # read only: rolled back when the block ends
        ids = await crud.due_ids(uow.session, SWEEP_BATCH)
    senders = asyncio.Semaphore(SENDERS)

    async def one(delivery_id: int) -> str:
        async with senders:
            return await attempt(delivery_id)

    results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
    for delivery_id, result in zip(ids, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("webhook_attempt_failed", delivery_id=delivery_id, error=repr(result))
    return sum(result == "delivered" for result in results)


HANDLERS: dict[str, Handler] = {
    webhooks.DELIVER: deliver_job,
    webhooks.CHECK_SOLD_OUT: webhooks.check_sold_out,
}
