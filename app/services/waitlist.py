"""A waitlist that offers real seats.

When seats are freed (cancel, expiry of a hold or of an offer), the oldest waiting
entries whose quantity fits get them *in the same transaction*, as a pending booking
(`source: waitlist`) held for `WAITLIST_OFFER_MINUTES`: freed seats never appear free to
the public while a waiting entry could take them. The notification is a job.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError

from app.core.db import UnitOfWork
from app.core.errors import Conflict, InvalidState, NotFound
from app.crud import events as events_crud
from app.crud import inventory
from app.crud import waitlist as crud
from app.crud.inventory import LockedSeat
from app.infra import cache, outbox
from app.models import BookingSource, EventStatus, SeatStatus, User, WaitlistEntry, WaitlistStatus
from app.schemas.waitlist import WaitlistEntryRead, WaitlistJoin
from app.services import inventory as rules
from app.services import webhooks
from app.services.notifications import WAITLIST_OFFER


async def pass_on(uow: UnitOfWork, event_id: int, seats: Sequence[LockedSeat]) -> None:
    """Seats (locked) whose booking ended: waiting entries first, the public after."""
    if not seats:
        return
    offered = await _offer_freed(uow, event_id, seats)
    given = {s.id for s in offered}
    public = [s for s in seats if s.id not in given]
    await inventory.free_seats(uow.session, [s.id for s in public])
    if public:
        rules.announce(uow, event_id, public, SeatStatus.AVAILABLE)
    if offered:
        rules.announce(uow, event_id, offered, SeatStatus.HELD)


async def _offer_freed(
    uow: UnitOfWork, event_id: int, freed: Sequence[LockedSeat]
) -> list[LockedSeat]:
    """Give freed seats (locked by the caller) to waiting entries; returns the seats given
    (freed ones, and available ones locked here to complete an entry)."""
    entries = await crud.waiting_for_update(uow.session, event_id)
    if not entries or not await _on_sale(uow, event_id):
        return []
    wanted = sum(e.quantity for e in entries)
    freed_ids = {s.id for s in freed}
    others = await inventory.lock_available_seats(uow.session, event_id, wanted)
    pool = [*freed, *(s for s in others if s.id not in freed_ids)]
    given: list[LockedSeat] = []
    for entry in entries:
        if entry.quantity > len(pool):
            continue  # FIFO among those that fit: a smaller request behind may still fit
        seats, pool = pool[: entry.quantity], pool[entry.quantity :]
        await _offer(uow, entry, seats)
        given.extend(seats)
    return given


async def _on_sale(uow: UnitOfWork, event_id: int) -> bool:
    event = await events_crud.get(uow.session, event_id)
    return (
        event is not None
        and event.status == EventStatus.PUBLISHED
        and event.starts_at > datetime.now(UTC)
    )


async def _offer(uow: UnitOfWork, entry: WaitlistEntry, seats: Sequence[LockedSeat]) -> None:
    booking = rules.pending_booking(entry.user_id, entry.event_id, seats, BookingSource.WAITLIST)
    booking_id = await inventory.insert_booking(uow.session, booking, seats)
    entry.status = WaitlistStatus.OFFERED
    entry.offered_booking_id = booking_id
    await outbox.enqueue(uow, WAITLIST_OFFER, booking_id=booking_id)
    await webhooks.waitlist_offered(uow, entry.event_id, booking_id, entry.id, len(seats))


async def join(uow: UnitOfWork, user: User, request: WaitlistJoin) -> WaitlistEntryRead:
    """Queue for seats of a sold-out event; refused while enough seats are free."""
    state = await inventory.sale_state(uow.session, user.id, request.event_id)
    state = rules.check_on_sale(request.event_id, state)
    rules.check_user_cap(state.claimed_by_user, request.quantity)
    event_id = request.event_id
    if await crud.active_for(uow.session, user.id, event_id) is not None:
        raise Conflict("You are already on the waitlist for this event.")
    free = (await inventory.counts(uow.session, event_id)).available
    if free >= request.quantity:
        raise Conflict(f"{free} seats are free right now: book them instead.", available=free)
    entry = WaitlistEntry(user_id=user.id, event_id=event_id, quantity=request.quantity)
    uow.session.add(entry)
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # the same user joining twice at the same moment
        raise Conflict("You are already on the waitlist for this event.") from exc
    await uow.session.refresh(entry)
    read = await _read(uow, entry)
    if read.position == 1:
        _queue_changed(uow, event_id)
    return read


def _queue_changed(uow: UnitOfWork, event_id: int) -> None:
    """The event's queue has just started or emptied. A lapsed hold not yet released by
    the sweeper is free to buyers only while nobody waits (`crud.inventory.seat_is_free`),
    so the cached seat map and counts may now be wrong: drop them after commit (found by
    the model-based test: a map kept showing such seats held after the queue emptied)."""

    async def after() -> None:
        await cache.invalidate_event(event_id)

    uow.after_commit(after)


async def _position(uow: UnitOfWork, entry: WaitlistEntry) -> int | None:
    if entry.status != WaitlistStatus.WAITING:
        return None
    ahead = select(func.count()).where(
        WaitlistEntry.event_id == entry.event_id,
        WaitlistEntry.status == WaitlistStatus.WAITING,
        tuple_(WaitlistEntry.created_at, WaitlistEntry.id) < tuple_(entry.created_at, entry.id),
    )
    return int((await uow.session.scalar(ahead)) or 0) + 1


async def _read(uow: UnitOfWork, entry: WaitlistEntry) -> WaitlistEntryRead:
    read = WaitlistEntryRead.model_validate(entry)
    read.position = await _position(uow, entry)
    return read


async def my_entries(uow: UnitOfWork, user: User) -> list[WaitlistEntryRead]:
    """The caller's entries and offers, newest first."""
    return [await _read(uow, e) for e in await crud.list_for_user(uow.session, user.id)]


async def leave(uow: UnitOfWork, user: User, entry_id: int) -> WaitlistEntryRead:
    """Leave the queue (a waiting entry; an offer is declined by cancelling its booking)."""
    entry = await crud.get(uow.session, entry_id)
    if entry is None or entry.user_id != user.id:
        raise NotFound(f"Waitlist entry {entry_id} does not exist.")
    if entry.status == WaitlistStatus.OFFERED:
        raise InvalidState(
            f"Seats are already held for you in booking {entry.offered_booking_id}: "
            "confirm it, or cancel it to pass them on."
        )
    if entry.status == WaitlistStatus.WAITING:
        entry.status = WaitlistStatus.LEFT
        await uow.session.flush()
        if not await crud.any_waiting(uow.session, entry.event_id):
            _queue_changed(uow, entry.event_id)
    return await _read(uow, entry)
