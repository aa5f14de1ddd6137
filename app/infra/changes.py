"""What a committed write must tell the outside: cache invalidation and live messages.

Called inside the transaction; everything here runs only after it commits.
"""

from collections.abc import Sequence
from typing import Protocol

from app.core.db import UnitOfWork
from app.core.redis import redis
from app.infra import cache, realtime


class Totals(Protocol):
    @property
    def available(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def booked(self) -> int: ...


def seats_changed(
    uow: UnitOfWork, event_id: int, seat_ids: Sequence[int], status: str, totals: Totals
) -> None:
    """Seats of an event moved to `status`: drop its cached views, tell live clients,
    in one Redis round trip after commit. `totals` are the event's counts as this
    transaction leaves them."""
    message = {
        "type": "seats",
        "seat_ids": sorted(seat_ids),
        "status": status,
        "available": totals.available,
        "held": totals.held,
        "booked": totals.booked,
    }

    async def after() -> None:
        seq = await realtime.publish(
            event_id,
            message,
            version_key=cache.event_version_key(event_id),
            drop=cache.event_keys(event_id),
            version_ttl_s=cache.VERSION_TTL_S,
        )
        if seq is None:
            redis.dirty = True  # the invalidation was lost: flush when Redis is back

    uow.after_commit(after)


def event_changed(uow: UnitOfWork, event_id: int, status: str | None = None) -> None:
    """An event's details or status changed: drop its cached views and the lists."""

    async def after() -> None:
        await cache.invalidate_event(event_id, listing=True)
        if status is not None:
            await realtime.publish(event_id, {"type": "event", "status": status})

    uow.after_commit(after)
