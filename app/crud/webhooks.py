"""Webhooks and their deliveries. Never commits."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Booking, BookingStatus, Event, Seat, SeatStatus, Webhook, WebhookDelivery

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Claimed:
    """One attempt at one delivery, as the sender needs it (no ORM object crosses the send)."""

    id: int
    webhook_id: int
    event_type: str
    payload: dict[str, Any]
    attempt: int
    first_attempt_at: datetime
    url: str
    secret: str


async def hooks_for_event(session: AsyncSession, event_id: int) -> list[tuple[int, list[str]]]:
    """(id, event types) of the enabled webhooks whose scope covers the event."""
    organizer = select(Event.organizer_id).where(Event.id == event_id).scalar_subquery()
    stmt = select(Webhook.id, Webhook.events).where(
        Webhook.disabled_at.is_(None),
        or_(
            Webhook.event_id == event_id,
            and_(
                Webhook.event_id.is_(None),
                or_(Webhook.organizer_id.is_(None), Webhook.organizer_id == organizer),
            ),
        ),
    )
    return [(hook_id, list(types)) for hook_id, types in await session.execute(stmt)]


async def add_deliveries(
    session: AsyncSession,
    webhook_ids: Sequence[int],
    event_type: str,
    event_key: str,
    payload: dict[str, Any],
) -> list[int]:
    """One pending delivery per webhook; those that already exist for the key are skipped."""
    rows = [
        {
            "webhook_id": hook_id,
            "event_type": event_type,
            "event_key": event_key,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": func.now(),
        }
        for hook_id in webhook_ids
    ]
    stmt = (
        insert(WebhookDelivery)
        .values(rows)
        .on_conflict_do_nothing(constraint="uq_webhook_deliveries_webhook_event")
        .returning(WebhookDelivery.id)
    )
    return list(await session.scalars(stmt))


async def is_sold_out(session: AsyncSession, event_id: int) -> bool:
    """No seat available or held: two probes of the (event_id, status) index."""
    open_seat = exists().where(
        Seat.event_id == event_id, Seat.status.in_([SeatStatus.AVAILABLE, SeatStatus.HELD])
    )
    return not await session.scalar(select(open_seat))


async def last_confirmed_booking(session: AsyncSession, event_id: int) -> int | None:
    stmt = (
        select(Booking.id)
        .where(Booking.event_id == event_id, Booking.status == BookingStatus.CONFIRMED)
        .order_by(Booking.confirmed_at.desc(), Booking.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def get(session: AsyncSession, webhook_id: int) -> Webhook | None:
    return await session.get(Webhook, webhook_id)


async def page(
    session: AsyncSession, owner_id: int | None, limit: int, offset: int
) -> tuple[Sequence[Webhook], int]:
    """Webhooks of one owner (None: all), oldest first."""
    where = [] if owner_id is None else [Webhook.owner_id == owner_id]
    total = await session.scalar(select(func.count()).select_from(Webhook).where(*where))
    stmt = select(Webhook).where(*where).order_by(Webhook.id).limit(limit).offset(offset)
    return (await session.scalars(stmt)).all(), total or 0


async def deliveries(
    session: AsyncSession, webhook_id: int, limit: int, offset: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """A webhook's delivery log, newest first."""
    where = WebhookDelivery.webhook_id == webhook_id
    total = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(where))
    stmt = (
        select(WebhookDelivery)
        .where(where)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(stmt)).all(), total or 0


async def get_delivery(
    session: AsyncSession, webhook_id: int, delivery_id: int
) -> WebhookDelivery | None:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id)
        .with_for_update()
    )
    return await session.scalar(stmt)


def _due() -> Any:
    """Pending, due, not leased by a sender now, and its webhook enabled."""
    return and_(
        WebhookDelivery.status == PENDING,
        WebhookDelivery.next_attempt_at <= func.now(),
        or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until < func.now()),
        Webhook.id == WebhookDelivery.webhook_id,
        Webhook.disabled_at.is_(None),
    )


async def due_ids(session: AsyncSession, limit: int) -> list[int]:
    stmt = (
        select(WebhookDelivery.id)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(_due())
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def claim(session: AsyncSession, delivery_id: int, lease: timedelta) -> Claimed | None:
    """Take the delivery for one attempt if it is due. One UPDATE: a second sender racing
    for the same row waits on its lock, then finds it leased and gets nothing."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, _due())
        .values(
            leased_until=func.now() + lease,
            attempts=WebhookDelivery.attempts + 1,
            first_attempt_at=func.coalesce(WebhookDelivery.first_attempt_at, func.now()),
            last_attempt_at=func.now(),
        )
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.event_type,
            WebhookDelivery.payload,
            WebhookDelivery.attempts,
            WebhookDelivery.first_attempt_at,
            Webhook.url,
            Webhook.secret,
        )
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else Claimed(*row)


async def record(session: AsyncSession, claimed: Claimed, **values: Any) -> bool:
    """The outcome of one attempt; False if another attempt has claimed the row since."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claimed.id, WebhookDelivery.attempts == claimed.attempt)
        .values(leased_until=None, **values)
        .returning(WebhookDelivery.id)
    )
    return (await session.scalar(stmt)) is not None


async def disable(session: AsyncSession, webhook_id: int, reason: str) -> int | None:
    """Disable an enabled webhook; its owner's id, or None if it was disabled already."""
    stmt = (
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.disabled_at.is_(None))
        .values(disabled_at=func.now(), disabled_reason=reason)
        .returning(Webhook.owner_id)
    )
    return await session.scalar(stmt)


async def restart_pending(session: AsyncSession, webhook_id: int) -> None:
    """Re-enabled: what was still pending is due now, with a new retry window."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == PENDING)
        .values(next_attempt_at=func.now(), first_attempt_at=None)
    )
