"""Simulated e-mail: each message is a `notifications` row and a structured log line.

Every `HANDLERS` function is a job handler (see `app.infra.outbox`), run by the worker after
the change that caused it committed. A message's `dedupe_key` makes a second delivery a
no-op even outside the job's own exactly-once guard.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import UnitOfWork
from app.crud import notifications as crud
from app.infra.outbox import Handler
from app.models import Booking, BookingStatus, Event, Seat, Ticket, User
from app.schemas.common import Page
from app.schemas.notification import NotificationRead

log = structlog.get_logger("evently.mail")

BOOKING_CONFIRMED = "booking_confirmed"
BOOKING_CANCELLED = "booking_cancelled"
EVENT_UPDATED = "event_updated"
EVENT_CANCELLED = "event_cancelled"
WAITLIST_OFFER = "waitlist_offer"


async def send(
    uow: UnitOfWork, user_id: int, kind: str, subject: str, body: str, dedupe_key: str
) -> None:
    """ "Send" one e-mail: store it once, and log it."""
    delay = get_settings().notification_delay_ms
    if delay:
        await asyncio.sleep(delay / 1000)  # a slow mail provider
    if await crud.add_once(uow.session, user_id, kind, subject, body, dedupe_key):
        email = await uow.session.scalar(select(User.email).where(User.id == user_id))
        log.info("email_sent", to=email, kind=kind, subject=subject, dedupe_key=dedupe_key)


async def _booking_and_event(uow: UnitOfWork, booking_id: int) -> tuple[Booking, Event]:
    row = (
        await uow.session.execute(
            select(Booking, Event)
            .join(Event, Event.id == Booking.event_id)
            .where(Booking.id == booking_id)
        )
    ).one()
    return row[0], row[1]


async def _tickets(uow: UnitOfWork, booking_id: int) -> Sequence[tuple[str, str]]:
    stmt = (
        select(Ticket.code, Seat.label)
        .join(Seat, Seat.id == Ticket.seat_id)
        .where(Ticket.booking_id == booking_id)
        .order_by(Seat.id)
    )
    return [(code, label) for code, label in await uow.session.execute(stmt)]


async def booking_confirmed(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    del job_id
    booking, event = await _booking_and_event(uow, payload["booking_id"])
    lines = [f"  {label}: ticket {code}" for code, label in await _tickets(uow, booking.id)]
    body = (
        f"Your booking {booking.id} for {event.name} at {event.venue} on "
        f"{event.starts_at:%Y-%m-%d %H:%M %Z} is confirmed.\n" + "\n".join(lines)
    )
    await send(
        uow,
        booking.user_id,
        BOOKING_CONFIRMED,
        f"Your tickets for {event.name}",
        body,
        f"{BOOKING_CONFIRMED}:{booking.id}",
    )


async def booking_cancelled(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    del job_id
    booking, event = await _booking_and_event(uow, payload["booking_id"])
    body = f"Your booking {booking.id} for {event.name} was cancelled; its seats were released."
    await send(
        uow,
        booking.user_id,
        BOOKING_CANCELLED,
        f"Booking cancelled: {event.name}",
        body,
        f"{BOOKING_CANCELLED}:{booking.id}",
    )


async def _ticket_holders(uow: UnitOfWork, event_id: int) -> list[int]:
    stmt = (
        select(Booking.user_id)
        .where(Booking.event_id == event_id, Booking.status == BookingStatus.CONFIRMED)
        .distinct()
        .order_by(Booking.user_id)
    )
    return list(await uow.session.scalars(stmt))


async def event_updated(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    """Time or venue changed: every holder of a confirmed booking hears about it."""
    event = await uow.session.get(Event, payload["event_id"])
    if event is None:
        return
    what = ", ".join(f"{name} is now {value}" for name, value in payload["changes"].items())
    for user_id in await _ticket_holders(uow, event.id):
        await send(
            uow,
            user_id,
            EVENT_UPDATED,
            f"{event.name} has changed",
            f"{event.name}: {what}. Your tickets stay valid.",
            f"{EVENT_UPDATED}:{job_id}:{user_id}",
        )


async def event_cancelled(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    event = await uow.session.get(Event, payload["event_id"])
    if event is None:
        return
    for user_id in payload["user_ids"]:
        await send(
            uow,
            user_id,
            EVENT_CANCELLED,
            f"{event.name} is cancelled",
            f"{event.name} on {event.starts_at:%Y-%m-%d} is cancelled; so are your bookings.",
            f"{EVENT_CANCELLED}:{job_id}:{user_id}",
        )


async def waitlist_offer(uow: UnitOfWork, job_id: int, payload: dict[str, Any]) -> None:
    del job_id
    booking, event = await _booking_and_event(uow, payload["booking_id"])
    expires = f"{booking.expires_at:%Y-%m-%d %H:%M %Z}" if booking.expires_at else "soon"
    body = (
        f"Seats for {event.name} are held for you (booking {booking.id}, "
        f"{booking.total_cents / 100:.2f} in total). Confirm before {expires} or they pass on."
    )
    await send(
        uow,
        booking.user_id,
        WAITLIST_OFFER,
        f"Seats are waiting for you: {event.name}",
        body,
        f"{WAITLIST_OFFER}:{booking.id}",
    )


async def list_mine(uow: UnitOfWork, user: User, limit: int, offset: int) -> Page[NotificationRead]:
    """The caller's notifications, newest first."""
    rows, total = await crud.list_for_user(uow.session, user.id, limit, offset)
    items = [NotificationRead.model_validate(n) for n in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


HANDLERS: dict[str, Handler] = {
    BOOKING_CONFIRMED: booking_confirmed,
    BOOKING_CANCELLED: booking_cancelled,
    EVENT_UPDATED: event_updated,
    EVENT_CANCELLED: event_cancelled,
    WAITLIST_OFFER: waitlist_offer,
}
