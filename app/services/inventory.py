"""The rules of the inventory: when an event is on sale, how many seats one user may
have, how a hold is written and announced, and what a lock failure means to a buyer.

The statements (and the lock order) are in `app.crud.inventory`; this module decides
with them. Booking and the waitlist both go through it, so there is one of each rule.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core import metrics
from app.core.config import get_settings
from app.core.db import (
    UNIQUE_VIOLATION,
    UnitOfWork,
    is_lock_failure,
    retry_read_once,
    sqlstate,
    unit_of_work,
)
from app.core.errors import (
    DomainError,
    InvalidState,
    NotFound,
    SeatLimitExceeded,
    SeatsUnavailable,
)
from app.crud import inventory as crud
from app.crud.inventory import LockedSeat, SaleState
from app.infra import changes
from app.infra.realtime import Recounted, SeatCounts
from app.models import Booking, BookingSource, EventStatus, SeatStatus


def check_on_sale(event_id: int, state: SaleState | None) -> SaleState:
    """The event exists, is public, published, and has not started; else the domain error.

    A draft is reported as missing: drafts are not public (404, never a hint it exists).
    """
    if state is None or state.status == EventStatus.DRAFT:
        raise NotFound(f"Event {event_id} does not exist.")
    if state.status != EventStatus.PUBLISHED:
        raise InvalidState(f"Event {event_id} is {state.status.value}; it is not on sale.")
    if state.starts_at <= datetime.now(UTC):
        raise InvalidState(f"Event {event_id} has already started; it is not on sale.")
    return state


def check_user_cap(already: int, adding: int) -> None:
    """At most MAX_SEATS_PER_USER_PER_EVENT seats held or bought per user and event.

    409 wherever it is checked (hold or waitlist join): the request is well-formed, it
    conflicts with what the user already has, and becomes valid once they have less.
    """
    cap = get_settings().max_seats_per_user_per_event
    if already + adding > cap:
        raise SeatLimitExceeded(
            f"You may hold or buy at most {cap} seats for this event; you have {already}.",
            limit=cap,
            current=already,
        )


async def hold_seats(uow: UnitOfWork, booking: Booking, seats: Sequence[LockedSeat]) -> int:
    """Write `booking` (pending, not yet added) over `seats` (locked by the caller and
    free), and announce the change after commit; returns the new booking's id."""
    lapsed = sorted({s.booking_id for s in seats if s.booking_id is not None})
    await crud.expire_bookings(uow.session, lapsed)  # the holds these seats outlived
    booking_id = await crud.insert_booking(uow.session, booking, seats)
    announce(uow, booking.event_id, seats, SeatStatus.HELD)
    return booking_id


def pending_booking(
    user_id: int,
    event_id: int,
    seats: Sequence[LockedSeat],
    source: BookingSource,
    idempotency_key: str | None = None,
) -> Booking:
    """A pending booking of `seats`, lasting HOLD_MINUTES (or WAITLIST_OFFER_MINUTES)."""
    settings = get_settings()
    minutes = (
        settings.waitlist_offer_minutes
        if source == BookingSource.WAITLIST
        else settings.hold_minutes
    )
    return crud.new_pending_booking(user_id, event_id, seats, minutes, source, idempotency_key)


def announce(
    uow: UnitOfWork, event_id: int, seats: Sequence[LockedSeat], status: SeatStatus
) -> None:
    """After commit, tell caches and live clients that `seats` (as locked, with their
    stored status) moved to `status`; the event's counts move by the difference."""
    change = dict.fromkeys(("available", "held", "booked"), 0)
    for seat in seats:
        change[seat.status] -= 1
        change[status.value] += 1

    async def recount() -> Recounted:
        async def read() -> Recounted:
            async with unit_of_work(cache_fill=True) as reading:
                totals, snapshot = await crud.counts_in_snapshot(reading.session, event_id)
            return Recounted(SeatCounts(totals.available, totals.held, totals.booked), snapshot)

        return await retry_read_once(read)

    ids = [s.id for s in seats]
    changes.seats_changed(uow, event_id, ids, status, SeatCounts(**change), recount)


# The lock failures' SQLSTATEs, as the lock-failure metric names them.
LOCK_FAILURE_KINDS = {"55P03": "lock_timeout", "40P01": "deadlock", "40001": "serialization"}


@contextmanager
def contention(busy: Callable[[], DomainError]) -> Iterator[None]:
    """The one mapping of lock failures and backstop hits to domain errors.

    A lock we could not get in `lock_timeout` (or a deadlock or serialisation failure)
    becomes `busy()`; a hit on the unique index of active seat claims (the backstop, only
    reachable should the row locks ever be bypassed) becomes `SeatsUnavailable`.
    """
    try:
        yield
    except DBAPIError as exc:
        if is_lock_failure(exc):
            metrics.LOCK_FAILURES.labels(LOCK_FAILURE_KINDS.get(sqlstate(exc) or "", "other")).inc()
            raise busy() from exc
        if isinstance(exc, IntegrityError) and sqlstate(exc) == UNIQUE_VIOLATION:
            metrics.LOCK_FAILURES.labels("claim_index").inc()
            raise SeatsUnavailable("Some of the requested seats were just taken.") from exc
        raise
