"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

from collections.abc import Sequence

from app.core.db import UnitOfWork
from app.crud import events as events_crud
from app.services import cache, realtime


def seats_changed(
    uow: UnitOfWork, event_id: int, seat_ids: Sequence[int], status: str, totals: dict[str, int]
) -> None:
    """Seats of an event moved to `status`: drop its cached views, tell live clients.

    `totals` are the event's counts as this transaction leaves them.
    """
    ids = sorted(seat_ids)

    async def after() -> None:
        await cache.invalidate_event(event_id)
        await realtime.publish_seats(event_id, ids, status, totals)

    uow.after_commit(after)


async def seats_changed_counted(
    uow: UnitOfWork, event_id: int, seat_ids: Sequence[int], status: str
) -> None:
    """`seats_changed`, counting the event's seats in the transaction first."""
    counts = await events_crud.counts(uow.session, event_id)
    totals = {"available": counts.available, "held": counts.held, "booked": counts.booked}
    seats_changed(uow, event_id, seat_ids, status, totals)


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views and the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
