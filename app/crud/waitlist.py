"""Waitlist entries. Never commits."""

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import WaitlistEntry, WaitlistStatus

ACTIVE = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


async def waiting_for_update(session: AsyncSession, event_id: int) -> Sequence[WaitlistEntry]:
    """The event's waiting entries, oldest first, locked (others being handled are skipped)."""
    stmt = (
        select(WaitlistEntry)
        .where(WaitlistEntry.event_id == event_id, WaitlistEntry.status == WaitlistStatus.WAITING)
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(stmt)).all()


async def any_waiting(session: AsyncSession, event_id: int) -> bool:
    stmt = select(
        select(WaitlistEntry.id)
        .where(WaitlistEntry.event_id == event_id, WaitlistEntry.status == WaitlistStatus.WAITING)
        .exists()
    )
    return bool(await session.scalar(stmt))


async def get(session: AsyncSession, entry_id: int) -> WaitlistEntry | None:
    return await session.get(WaitlistEntry, entry_id)


async def active_for(session: AsyncSession, user_id: int, event_id: int) -> WaitlistEntry | None:
    stmt = select(WaitlistEntry).where(
        WaitlistEntry.user_id == user_id,
        WaitlistEntry.event_id == event_id,
        WaitlistEntry.status.in_(ACTIVE),
    )
    return await session.scalar(stmt)


async def list_for_user(session: AsyncSession, user_id: int) -> Sequence[WaitlistEntry]:
    stmt = (
        select(WaitlistEntry)
        .where(WaitlistEntry.user_id == user_id)
        .order_by(WaitlistEntry.created_at.desc(), WaitlistEntry.id.desc())
    )
    return (await session.scalars(stmt)).all()


async def set_status_for_bookings(
    session: AsyncSession, booking_ids: Sequence[int], status: WaitlistStatus
) -> None:
    """Close the offers behind these bookings (confirmed: fulfilled; lapsed: expired)."""
    if booking_ids:
        await session.execute(
            update(WaitlistEntry)
            .where(
                WaitlistEntry.offered_booking_id.in_(list(booking_ids)),
                WaitlistEntry.status == WaitlistStatus.OFFERED,
            )
            .values(status=status)
        )


async def close_all(session: AsyncSession, event_id: int) -> None:
    await session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.event_id == event_id, WaitlistEntry.status.in_(ACTIVE))
        .values(status=WaitlistStatus.EXPIRED)
    )
