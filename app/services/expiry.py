"""The hold sweeper: pending bookings past `expires_at` become expired, seats move on.

Availability never waits for this (an expired hold is already free to the next buyer,
see `crud.inventory.seat_is_free`); the sweeper records the expiry, hands the seats to
the waitlist or the public, and tells caches and live clients. Rows other transactions
have locked are skipped (SKIP LOCKED), so it never waits on, or deadlocks with, a booking
in flight; what it skips it finds on its next run.
"""

from collections import defaultdict

import structlog

from app.core.db import UnitOfWork
from app.crud import inventory
from app.crud import waitlist as waitlist_crud
from app.crud.inventory import LockedSeat
from app.models import WaitlistStatus
from app.services import waitlist

log = structlog.get_logger(__name__)

BATCH = 200


async def expire_due(uow: UnitOfWork, batch: int = BATCH) -> int:
    """Expire up to `batch` lapsed holds in the caller's transaction; returns how many."""
    due = await inventory.lock_due_for_expiry(uow.session, batch)
    if not due:
        return 0
    ids = [booking_id for booking_id, _ in due]
    event_of = dict(due)
    seats = await inventory.lock_seats_of_bookings(uow.session, ids)
    await inventory.expire_bookings(uow.session, ids)
    await waitlist_crud.set_status_for_bookings(uow.session, ids, WaitlistStatus.EXPIRED)
    by_event: dict[int, list[LockedSeat]] = defaultdict(list)
    for seat in seats:
        if seat.booking_id is not None:
            by_event[event_of[seat.booking_id]].append(seat)
    for event_id, freed in sorted(by_event.items()):
        await waitlist.pass_on(uow, event_id, freed)
    log.info("holds_expired", bookings=len(ids), seats=len(seats))
    return len(ids)
