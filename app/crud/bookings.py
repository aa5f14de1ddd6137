"""Reading bookings, their seats and tickets; writing tickets. Never commits.

Everything that locks seats or bookings, or changes what a seat belongs to, is in
`app.crud.inventory`.
"""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Booking, BookingSeat, BookingStatus, Seat, Ticket


async def get(session: AsyncSession, booking_id: int) -> Booking | None:
    return await session.get(Booking, booking_id)


async def seats_of(
    session: AsyncSession, booking_ids: Sequence[int]
) -> dict[int, list[tuple[int, str, str, int]]]:
    """booking id -> [(seat id, label, section, price)] for every seat it ever claimed."""
    stmt = (
        select(BookingSeat.booking_id, Seat.id, Seat.label, Seat.section, BookingSeat.price_cents)
        .join(Seat, Seat.id == BookingSeat.seat_id)
        .where(BookingSeat.booking_id.in_(list(booking_ids)))
        .order_by(Seat.id)
    )
    result: dict[int, list[tuple[int, str, str, int]]] = {b: [] for b in booking_ids}
    for booking_id, seat_id, label, section, price in await session.execute(stmt):
        result[booking_id].append((seat_id, label, section, price))
    return result


async def tickets_of(session: AsyncSession, booking_ids: Sequence[int]) -> dict[int, list[Ticket]]:
    stmt = select(Ticket).where(Ticket.booking_id.in_(list(booking_ids))).order_by(Ticket.id)
    result: dict[int, list[Ticket]] = {b: [] for b in booking_ids}
    for ticket in await session.scalars(stmt):
        result[ticket.booking_id].append(ticket)
    return result


async def add_tickets(session: AsyncSession, tickets: Sequence[Ticket]) -> None:
    session.add_all(tickets)
    await session.flush()


async def list_for_user(
    session: AsyncSession, user_id: int, limit: int, offset: int
) -> tuple[Sequence[Booking], int]:
    total = await session.scalar(
        select(func.count()).select_from(Booking).where(Booking.user_id == user_id)
    )
    stmt = (
        select(Booking)
        .where(Booking.user_id == user_id)
        .order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(stmt)).all(), total or 0


async def active_booking_ids_for_event(session: AsyncSession, event_id: int) -> list[int]:
    stmt = select(Booking.id).where(
        Booking.event_id == event_id,
        Booking.status.in_([BookingStatus.PENDING, BookingStatus.CONFIRMED]),
    )
    return list(await session.scalars(stmt))


async def users_of(session: AsyncSession, booking_ids: Sequence[int]) -> list[int]:
    if not booking_ids:
        return []
    stmt = select(Booking.user_id).where(Booking.id.in_(list(booking_ids))).distinct()
    return sorted(await session.scalars(stmt))
