"""Organizer webhooks: subscriptions, and the events they are told about.

A trigger (`booking_confirmed`, `event_cancelled`, ...) is called by the use case that
caused it, in its unit of work: it writes one delivery per matching webhook, with the body
frozen now, and one outbox job per delivery, so a delivery exists if and only if its cause
committed. `event_key` names the happening (`booking.confirmed:<booking id>`): the same
trigger run twice finds its deliveries there and adds none. Sending is in
`app.services.webhook_delivery`.
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.core.config import get_settings
from app.core.db import UnitOfWork
from app.core.errors import InvalidInput, InvalidState, NotFound
from app.crud import events as events_crud
from app.crud import webhooks as crud
from app.infra import outbox, ssrf
from app.models import Booking, Event, Role, User, Webhook, WebhookDelivery
from app.schemas.common import Page
from app.schemas.webhook import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead

DELIVER = "webhook_deliver"
CHECK_SOLD_OUT = "webhook_check_sold_out"

BOOKING_CONFIRMED = "booking.confirmed"
BOOKING_CANCELLED = "booking.cancelled"
EVENT_UPDATED = "event.updated"
EVENT_CANCELLED = "event.cancelled"
EVENT_SOLD_OUT = "event.sold_out"
WAITLIST_OFFERED = "waitlist.offered"


# -- triggers ---------------------------------------------------------------------------


async def emit(
    uow: UnitOfWork, event_type: str, event_id: int, key: str, data: dict[str, Any]
) -> list[int]:
    """Queue `event_type` for every enabled webhook subscribed to it on this event."""
    hooks = [
        h for h, types in await crud.hooks_for_event(uow.session, event_id) if event_type in types
    ]
    return await _deliver(uow, hooks, event_type, event_id, key, data)


async def _deliver(
    uow: UnitOfWork,
    hooks: Sequence[int],
    event_type: str,
    event_id: int,
    key: str,
    data: dict[str, Any],
) -> list[int]:
    if not hooks:
        return []
    body = {
        "type": event_type,
        "event_id": event_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }
    ids = await crud.add_deliveries(uow.session, hooks, event_type, f"{event_type}:{key}", body)
    for delivery_id in ids:
        await outbox.enqueue(uow, DELIVER, delivery_id=delivery_id)
    return ids


def _booking(booking: Booking, seat_labels: Sequence[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "booking_id": booking.id,
        "status": booking.status.value,
        "source": booking.source.value,
        "total_cents": booking.total_cents,
    }
    if seat_labels is not None:
        data["seats"] = list(seat_labels)
    return data


async def booking_confirmed(uow: UnitOfWork, booking: Booking, seat_labels: Sequence[str]) -> None:
    """A booking was paid for; may also have sold the event out (checked after commit)."""
    hooks = await crud.hooks_for_event(uow.session, booking.event_id)
    confirmed = [h for h, types in hooks if BOOKING_CONFIRMED in types]
    data = _booking(booking, seat_labels) | {"confirmed_at": _iso(booking.confirmed_at)}
    await _deliver(uow, confirmed, BOOKING_CONFIRMED, booking.event_id, str(booking.id), data)
    if any(EVENT_SOLD_OUT in types for _, types in hooks):
        # Checked by a job, once this commits: two last confirmations running side by side
        # each see the other's seats still held, and neither could tell in its transaction.
        await outbox.enqueue(uow, CHECK_SOLD_OUT, event_id=booking.event_id)


async def booking_cancelled(uow: UnitOfWork, booking: Booking, *, was_confirmed: bool) -> None:
    """A sold booking was cancelled (a pending hold let go is no news to an organizer)."""
    if was_confirmed:
        data = _booking(booking) | {"cancelled_at": _iso(booking.cancelled_at)}
        await emit(uow, BOOKING_CANCELLED, booking.event_id, str(booking.id), data)


async def event_updated(uow: UnitOfWork, event: Event, fields: Sequence[str]) -> None:
    if fields:
        data = _event(event) | {"changed": sorted(fields)}
        await emit(uow, EVENT_UPDATED, event.id, _iso(event.updated_at) or "", data)


async def event_cancelled(uow: UnitOfWork, event: Event, bookings_cancelled: int) -> None:
    data = _event(event) | {"bookings_cancelled": bookings_cancelled}
    await emit(uow, EVENT_CANCELLED, event.id, str(event.id), data)


async def waitlist_offered(
    uow: UnitOfWork, event_id: int, booking_id: int, entry_id: int, seats: int
) -> None:
    data = {"booking_id": booking_id, "waitlist_entry_id": entry_id, "quantity": seats}
    await emit(uow, WAITLIST_OFFERED, event_id, str(booking_id), data)


async def check_sold_out(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    """Job: every seat of the event is booked. One delivery per sell-out: the key is the
    booking that completed it, so the jobs of two last confirmations agree on it."""
    del job_id
    event_id = payload["event_id"]
    if not await crud.is_sold_out(uow.session, event_id):
        return
    last = await crud.last_confirmed_booking(uow.session, event_id)
    event = await events_crud.get(uow.session, event_id)
    if last is None or event is None:
        return
    data = _event(event) | {"last_booking_id": last}
    await emit(uow, EVENT_SOLD_OUT, event_id, f"{event_id}:{last}", data)


def _event(event: Event) -> dict[str, Any]:
    return {
        "name": event.name,
        "venue": event.venue,
        "starts_at": _iso(event.starts_at),
        "status": event.status.value,
        "total_capacity": event.total_capacity,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# -- subscriptions ----------------------------------------------------------------------


async def create(uow: UnitOfWork, user: User, spec: WebhookCreate) -> WebhookCreated:
    """Subscribe a URL; the secret is returned this once."""
    url = str(spec.url)
    await check_url(url)
    organizer_id: int | None = user.id
    if spec.event_id is not None:
        event = await events_crud.get(uow.session, spec.event_id)
        if event is None or not _may_manage(user, event.organizer_id):
            raise NotFound(f"Event {spec.event_id} does not exist.")
        organizer_id = event.organizer_id
    elif user.role == Role.ADMIN:
        organizer_id = None  # an admin's webhook without an event: every event
    secret = spec.secret or f"whsec_{secrets.token_urlsafe(32)}"
    hook = Webhook(
        owner_id=user.id,
        organizer_id=organizer_id,
        event_id=spec.event_id,
        url=url,
        secret=secret,
        events=sorted(set(spec.events)),
    )
    uow.session.add(hook)
    await uow.session.flush()
    await uow.session.refresh(hook)
    return WebhookCreated.model_validate(hook)


async def check_url(url: str) -> None:
    """In production a webhook must reach a public address (SSRF); elsewhere anything."""
    if get_settings().app_env != "production":
        return
    try:
        await ssrf.resolve_public(url)
    except ssrf.UnsafeUrl as exc:
        raise InvalidInput(str(exc), code="unsafe_url") from exc


def _may_manage(user: User, owner_id: int | None) -> bool:
    return user.role == Role.ADMIN or owner_id == user.id


async def _mine(uow: UnitOfWork, user: User, webhook_id: int) -> Webhook:
    hook = await crud.get(uow.session, webhook_id)
    if hook is None or not _may_manage(user, hook.owner_id):
        raise NotFound(f"Webhook {webhook_id} does not exist.")
    return hook


async def list_mine(uow: UnitOfWork, user: User, limit: int, offset: int) -> Page[WebhookRead]:
    """The caller's webhooks (an admin: all)."""
    owner = None if user.role == Role.ADMIN else user.id
    rows, total = await crud.page(uow.session, owner, limit, offset)
    items = [WebhookRead.model_validate(h) for h in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


async def get(uow: UnitOfWork, user: User, webhook_id: int) -> WebhookRead:
    return WebhookRead.model_validate(await _mine(uow, user, webhook_id))


async def delete(uow: UnitOfWork, user: User, webhook_id: int) -> None:
    """Remove a webhook and its delivery log; nothing more is sent to it."""
    await uow.session.delete(await _mine(uow, user, webhook_id))
    await uow.session.flush()


async def enable(uow: UnitOfWork, user: User, webhook_id: int) -> WebhookRead:
    """Re-enable (after an automatic disable): pending deliveries are retried from now."""
    hook = await _mine(uow, user, webhook_id)
    if hook.disabled_at is not None:
        hook.disabled_at, hook.disabled_reason = None, None
        await uow.session.flush()
        # Due now, with a fresh retry window: the next sweep sends them.
        await crud.restart_pending(uow.session, hook.id)
    return WebhookRead.model_validate(hook)


async def deliveries(
    uow: UnitOfWork, user: User, webhook_id: int, limit: int, offset: int
) -> Page[DeliveryRead]:
    """The webhook's delivery log, newest first."""
    hook = await _mine(uow, user, webhook_id)
    rows, total = await crud.deliveries(uow.session, hook.id, limit, offset)
    items = [DeliveryRead.model_validate(d) for d in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


async def redeliver(uow: UnitOfWork, user: User, webhook_id: int, delivery_id: int) -> DeliveryRead:
    """Send a delivery again now (same body, same delivery id), whatever its state."""
    hook = await _mine(uow, user, webhook_id)
    delivery = await crud.get_delivery(uow.session, hook.id, delivery_id)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist.")
    if hook.disabled_at is not None:
        raise InvalidState("This webhook is disabled: enable it first.", code="webhook_disabled")
    _restart(delivery)
    await uow.session.flush()
    await outbox.enqueue(uow, DELIVER, delivery_id=delivery.id)
    return DeliveryRead.model_validate(delivery)


def _restart(delivery: WebhookDelivery) -> None:
    delivery.status = crud.PENDING
    delivery.next_attempt_at = datetime.now(UTC)
    delivery.first_attempt_at = None
