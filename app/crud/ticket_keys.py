"""Ticket signing keys and revocation lists. Never commits."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, any_, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Booking, Ticket, TicketKey, TicketRevocation, TicketRevocationHead


def _any(ids: Sequence[int]) -> ColumnElement[Any]:
    """`= ANY($1)`: one array parameter, however many ids (asyncpg allows 32,767)."""
    return any_(literal(list(ids), ARRAY(Integer)))


async def signing_key(session: AsyncSession, event_id: int) -> TicketKey | None:
    return await session.scalar(
        select(TicketKey).where(TicketKey.event_id == event_id, TicketKey.retired_at.is_(None))
    )


async def keys_of(session: AsyncSession, event_id: int) -> Sequence[TicketKey]:
    """Every key of the event, signing and retired, oldest first."""
    stmt = select(TicketKey).where(TicketKey.event_id == event_id).order_by(TicketKey.id)
    return (await session.scalars(stmt)).all()


async def key(session: AsyncSession, event_id: int, kid: str) -> TicketKey | None:
    return await session.scalar(
        select(TicketKey).where(TicketKey.event_id == event_id, TicketKey.kid == kid)
    )


async def add_signing_key(session: AsyncSession, values: dict[str, object]) -> bool:
    """Insert a signing key unless the event already has one (then False): concurrent
    first sales wait on the partial unique index and the losers insert nothing."""
    stmt = (
        insert(TicketKey)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["event_id"], index_where=TicketKey.retired_at.is_(None)
        )
        .returning(TicketKey.id)
    )
    return await session.scalar(stmt) is not None


async def retire_signing_key(session: AsyncSession, event_id: int) -> None:
    await session.execute(
        update(TicketKey)
        .where(TicketKey.event_id == event_id, TicketKey.retired_at.is_(None))
        .values(retired_at=func.now())
    )


async def revoke_for_bookings(session: AsyncSession, booking_ids: Sequence[int]) -> None:
    """Put the tickets of (just cancelled) bookings on their events' revocation lists."""
    if not booking_ids:
        return
    found = await unrevoked_tickets(session, booking_ids)
    for event_id in sorted(found):  # head rows locked in event order: no deadlock
        await append_revocations(session, event_id, found[event_id])


async def unrevoked_tickets(
    session: AsyncSession, booking_ids: Sequence[int]
) -> dict[int, list[int]]:
    """event id -> ids of the bookings' tickets not yet on its revocation list."""
    stmt = (
        select(Booking.event_id, Ticket.id)
        .join(Booking, Booking.id == Ticket.booking_id)
        .outerjoin(TicketRevocation, TicketRevocation.ticket_id == Ticket.id)
        .where(Ticket.booking_id == _any(booking_ids), TicketRevocation.ticket_id.is_(None))
        .order_by(Ticket.id)
    )
    found: dict[int, list[int]] = {}
    for event_id, ticket_id in await session.execute(stmt):
        found.setdefault(event_id, []).append(ticket_id)
    return found


async def append_revocations(session: AsyncSession, event_id: int, ticket_ids: list[int]) -> None:
    """Put tickets at the end of the event's list. The head row stays locked until commit:
    revocations of one event commit in `seq` order, so `since=` never skips one."""
    head = insert(TicketRevocationHead).values(event_id=event_id, last_seq=len(ticket_ids))
    last = await session.scalar(
        head.on_conflict_do_update(
            index_elements=["event_id"],
            set_={"last_seq": TicketRevocationHead.last_seq + len(ticket_ids)},
        ).returning(TicketRevocationHead.last_seq)
    )
    assert last is not None
    numbered = select(
        literal(event_id),
        Ticket.id,
        Ticket.code,
        func.row_number().over(order_by=Ticket.id) + (last - len(ticket_ids)),
    ).where(Ticket.id == _any(ticket_ids))
    columns = ["event_id", "ticket_id", "code", "seq"]
    await session.execute(insert(TicketRevocation).from_select(columns, numbered))


async def revocations(
    session: AsyncSession, event_id: int, since: int, limit: int
) -> Sequence[TicketRevocation]:
    stmt = (
        select(TicketRevocation)
        .where(TicketRevocation.event_id == event_id, TicketRevocation.seq > since)
        .order_by(TicketRevocation.seq)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()
