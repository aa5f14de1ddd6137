"""Events and their seat maps: create, update, publish, cancel, list, read."""

import asyncio
from datetime import UTC, datetime

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from app.core import metrics
from app.core.config import get_settings
from app.core.db import UnitOfWork, retry_read_once, unit_of_work
from app.core.errors import Forbidden, InvalidInput, InvalidState, NotFound
from app.crud import bookings as bookings_crud
from app.crud import events as crud
from app.crud import inventory
from app.crud import waitlist as waitlist_crud
from app.infra import cache, changes, outbox
from app.infra.cache import EventView, Found, Freshness, Payload
from app.infra.realtime import seq_key
from app.models import Event, EventStatus, Role, User
from app.schemas.common import Page
from app.schemas.event import (
    MAX_CAPACITY,
    Availability,
    EventCreate,
    EventDetail,
    EventFilters,
    EventRead,
    EventStatusRead,
    EventUpdate,
    GeneralAdmissionEventCreate,
    SeatedEventCreate,
)
from app.services import notifications, seatmap, waiting_room, webhooks

log = structlog.get_logger(__name__)

GA_SECTION = "GA"
NOTIFIED_FIELDS = frozenset({"starts_at", "venue"})


def _seated_rows(event_id: int, spec: SeatedEventCreate) -> list[dict[str, object]]:
    names = [s.name for s in spec.layout.sections]
    if len({n.lower() for n in names}) != len(names):
        raise InvalidInput("Section names must be unique within an event.")
    return [
        {
            "event_id": event_id,
            "section": section.name,
            "row": str(row),
            "number": number,
            "label": f"{section.name}-{row}-{number}",
            "price_cents": section.price_cents,
        }
        for section in spec.layout.sections
        for row in range(1, section.rows + 1)
        for number in range(1, section.seats_per_row + 1)
    ]


def _ga_rows(event_id: int, spec: GeneralAdmissionEventCreate) -> list[dict[str, object]]:
    # One row per admission, so "any N" locking is the same for GA and seated events.
    return [
        {
            "event_id": event_id,
            "section": GA_SECTION,
            "row": "1",
            "number": n,
            "label": f"GA-{n}",
            "price_cents": spec.price_cents,
        }
        for n in range(1, spec.capacity + 1)
    ]


def _capacity(spec: EventCreate) -> int:
    if isinstance(spec, GeneralAdmissionEventCreate):
        return spec.capacity
    return sum(s.rows * s.seats_per_row for s in spec.layout.sections)


async def create(uow: UnitOfWork, organizer: User, spec: EventCreate) -> EventRead:
    """A draft event with its whole seat inventory, in one transaction."""
    capacity = _capacity(spec)
    if capacity > MAX_CAPACITY:
        raise InvalidInput(
            f"An event may have at most {MAX_CAPACITY} seats; this layout has {capacity}."
        )
    _require_future(spec.starts_at)
    event = Event(
        organizer_id=organizer.id,
        name=spec.name,
        description=spec.description,
        venue=spec.venue,
        category=spec.category,
        starts_at=spec.starts_at,
        status=EventStatus.DRAFT,
        seating=spec.seating,
        total_capacity=capacity,
        sale_starts_at=spec.sale_starts_at,
    )
    event.queue = spec.queue.model_dump()
    uow.session.add(event)
    await uow.session.flush()
    rows = (
        _ga_rows(event.id, spec)
        if isinstance(spec, GeneralAdmissionEventCreate)
        else _seated_rows(event.id, spec)
    )
    await crud.insert_seats(uow.session, rows)
    await uow.session.refresh(event)
    waiting_room.event_saved(uow, event, queue_touched=False)
    return EventRead.model_validate(event)


def _require_future(starts_at: datetime) -> None:
    if starts_at <= datetime.now(UTC):
        raise InvalidInput("`starts_at` must be in the future.")


async def _managed(uow: UnitOfWork, user: User, event_id: int, *, lock: bool = False) -> Event:
    """An event the user may manage: their own, or any for an admin."""
    getter = crud.get_for_update if lock else crud.get
    event = await getter(uow.session, event_id)
    if event is None:
        raise NotFound(f"Event {event_id} does not exist.")
    if user.role != Role.ADMIN and event.organizer_id != user.id:
        raise Forbidden("You can only manage your own events.")
    return event


async def update(uow: UnitOfWork, user: User, event_id: int, patch: EventUpdate) -> EventRead:
    """Change an event's details; a cancelled event is final."""
    event = await _managed(uow, user, event_id, lock=True)
    if event.status == EventStatus.CANCELLED:
        raise InvalidState("This event was cancelled; it can no longer be changed.")
    fields = patch.model_dump(exclude_unset=True, exclude_none=True)
    if "starts_at" in fields:
        _require_future(fields["starts_at"])
    # Time and venue are what ticket holders plan around: they hear about those.
    noticed = {
        name: str(value)
        for name, value in fields.items()
        if name in NOTIFIED_FIELDS and getattr(event, name) != value
    }
    for name, value in fields.items():
        setattr(event, name, value)  # `queue` sets only the settings given
    if event.sale_starts_at is not None and event.sale_starts_at >= event.starts_at:
        raise InvalidInput("`sale_starts_at` must be before `starts_at`.")
    await uow.session.flush()
    changes.event_changed(uow, event.id)
    if noticed:
        await outbox.enqueue(uow, notifications.EVENT_UPDATED, event_id=event.id, changes=noticed)
    await uow.session.refresh(event)
    await webhooks.event_updated(uow, event, list(fields))
    waiting_room.event_saved(uow, event, queue_touched="queue" in fields)
    return EventRead.model_validate(event)


async def publish(uow: UnitOfWork, user: User, event_id: int) -> EventRead:
    """draft -> published (publishing a published event changes nothing)."""
    event = await _managed(uow, user, event_id, lock=True)
    if event.status == EventStatus.CANCELLED:
        raise InvalidState("This event was cancelled; it cannot be published.")
    if event.status == EventStatus.DRAFT:
        _require_future(event.starts_at)
        event.status = EventStatus.PUBLISHED
        await uow.session.flush()
        changes.event_changed(uow, event.id, EventStatus.PUBLISHED)
        await uow.session.refresh(event)
        waiting_room.event_saved(uow, event, queue_touched=False)
    return EventRead.model_validate(event)


async def cancel(uow: UnitOfWork, user: User, event_id: int) -> EventRead:
    """Cancel an event and every pending or confirmed booking of it."""
    event = await _managed(uow, user, event_id, lock=True)
    if event.status != EventStatus.CANCELLED:
        event.status = EventStatus.CANCELLED
        await uow.session.flush()
        # Locking every seat waits out holds in flight; a hold that locks after this
        # commits re-reads the event and sees it cancelled.
        await inventory.lock_all_seats(uow.session, event.id)
        active = await bookings_crud.active_booking_ids_for_event(uow.session, event.id)
        holders = await bookings_crud.users_of(uow.session, active)
        await inventory.cancel_bookings(uow.session, active)
        await inventory.free_all_seats(uow.session, event.id)
        await waitlist_crud.close_all(uow.session, event.id)
        if holders:
            await outbox.enqueue(
                uow, notifications.EVENT_CANCELLED, event_id=event.id, user_ids=holders
            )
        await uow.session.refresh(event)
        await webhooks.event_cancelled(uow, event, len(active))
        changes.event_changed(uow, event.id, EventStatus.CANCELLED)
        waiting_room.event_saved(uow, event, queue_touched=False)
    return EventRead.model_validate(event)


async def list_public(
    uow: UnitOfWork, filters: EventFilters, limit: int, offset: int
) -> Page[EventRead]:
    """Published, upcoming events, soonest first."""
    rows, total = await crud.list_published(uow.session, filters, limit, offset)
    return Page(
        items=[EventRead.model_validate(e) for e in rows], total=total, limit=limit, offset=offset
    )


async def list_managed(uow: UnitOfWork, user: User, limit: int, offset: int) -> Page[EventRead]:
    """Every event the user manages, drafts and cancelled ones included."""
    organizer = None if user.role == Role.ADMIN else user.id
    rows, total = await crud.list_managed(uow.session, organizer, limit, offset)
    return Page(
        items=[EventRead.model_validate(e) for e in rows], total=total, limit=limit, offset=offset
    )


async def _visible(uow: UnitOfWork, event_id: int) -> Event:
    event = await crud.get(uow.session, event_id)
    if event is None or event.status == EventStatus.DRAFT:  # drafts are not public
        raise NotFound(f"Event {event_id} does not exist.")
    return event


async def _detail(uow: UnitOfWork, event: Event) -> EventDetail:
    counts = await inventory.counts(uow.session, event.id)
    return EventDetail(
        **EventRead.model_validate(event).model_dump(),
        availability=Availability(
            total=counts.total, available=counts.available, held=counts.held, booked=counts.booked
        ),
        price_min_cents=counts.price_min,
        price_max_cents=counts.price_max,
    )


async def detail(uow: UnitOfWork, event_id: int) -> EventDetail:
    """A public event with live availability counts."""
    return await _detail(uow, await _visible(uow, event_id))


async def managed_detail(uow: UnitOfWork, user: User, event_id: int) -> EventDetail:
    """Any event the user manages (drafts too), with availability counts."""
    return await _detail(uow, await _managed(uow, user, event_id))


async def seat_map(uow: UnitOfWork, event_id: int) -> tuple[bytes, dict[str, int]]:
    """Every seat of a public event with the status a buyer sees, encoded as the
    `SeatMap` JSON, and the seats counted by that status."""
    await _visible(uow, event_id)
    return await seatmap.encode(uow, event_id)


async def status(uow: UnitOfWork, event_id: int) -> EventStatusRead:
    """Availability counts of a public event."""
    await _visible(uow, event_id)
    c = await inventory.counts(uow.session, event_id)
    return EventStatusRead(
        event_id=event_id, total=c.total, available=c.available, held=c.held, booked=c.booked
    )


# Cached public reads: the encoded bytes, straight from Redis on a hit (DESIGN §5).


async def list_public_payload(filters: EventFilters, limit: int, offset: int) -> Payload:
    key = cache.list_key(f"{filters}|{limit}|{offset}")

    async def produce() -> bytes:
        async with unit_of_work() as uow:
            page = await list_public(uow, filters, limit, offset)
        return page.model_dump_json().encode()

    return await cache.cached(key, cache.LIST_VERSION_KEY, cache.LIST_TTL_S, produce)


async def event_payload(event_id: int, view: EventView, *, fresh: bool = False) -> Payload:
    """A public event's detail, seat map or status, as the bytes sent (NotFound if not
    public), through the cache (see `serve_cached`). `fresh` reads PostgreSQL (and stores
    the result) whatever the cache holds."""
    if not get_settings().cache_enabled:
        return await _build(event_id, view)
    if not fresh:
        found = await cache.fetch(
            cache.event_key(event_id, view), cache.event_version_key(event_id)
        )
        if found is not None:
            return await serve_cached(event_id, view, found)
        _CACHE_RESULTS[view, "miss"].inc()
    return await _rebuild(event_id, view)


async def serve_cached(event_id: int, view: EventView, found: Found) -> Payload:
    """A cached view as it is while fresh enough; past that, one reader (across all
    processes) rebuilds it and the others keep getting these bytes meanwhile. Should the
    rebuild fail (no connection in time during a rush), these bytes are still the answer."""
    key = cache.event_key(event_id, view)
    if found.freshness() is Freshness.FRESH:
        return _counted(view, "fresh", found.payload)
    if not await cache.claim_refresh(key):
        return _counted(view, "stale", found.payload)
    # Claimed: but the previous rebuilder may have stored (and let go) just now.
    again = await cache.fetch(key, cache.event_version_key(event_id))
    if again is not None and again.freshness() is Freshness.FRESH:
        await cache.release_refresh(key)
        return _counted(view, "fresh", again.payload)
    try:
        return _counted(view, "rebuild", await _rebuild(event_id, view))
    except (DBAPIError, SQLAlchemyTimeoutError) as exc:
        log.warning("stale_view_served", event_id=event_id, view=view.name, error=repr(exc)[:120])
        return _counted(view, "stale", found.payload)


_CACHE_RESULTS = {
    (view, result): metrics.CACHE_REQUESTS.labels(view.name.lower(), result)
    for view in EventView
    for result in ("fresh", "stale", "rebuild", "miss")
}


def _counted(view: EventView, result: str, payload: Payload) -> Payload:
    """Count a read of a cached view by where its answer came from; returns `payload`."""
    _CACHE_RESULTS[view, result].inc()
    return payload


_building: dict[tuple[int, EventView], asyncio.Future[Payload]] = {}


async def _rebuild(event_id: int, view: EventView) -> Payload:
    """Build a view, store it (which frees its refresh lock), and return it. Readers of
    this process that need the same view meanwhile share the one build (a cold cache or a
    Redis outage must not send every reader to PostgreSQL at once)."""
    target = (event_id, view)
    building = _building.get(target)
    if building is not None:
        return await asyncio.shield(building)
    building = asyncio.get_running_loop().create_future()
    _building[target] = building
    try:
        payload = await _build_and_store(event_id, view)
    except BaseException as exc:
        building.set_exception(exc)
        building.exception()  # retrieved: only the waiters, if any, re-raise it
        raise
    else:
        building.set_result(payload)
        return payload
    finally:
        del _building[target]


async def _build_and_store(event_id: int, view: EventView) -> Payload:
    key = cache.event_key(event_id, view)
    try:
        payload = await _build(event_id, view)
    except BaseException:
        await cache.release_refresh(key)
        raise
    await cache.store_if_newer(key, payload, _TTL[view])
    return payload


_TTL = {
    EventView.DETAIL: cache.DETAIL_TTL_S,
    EventView.SEATS: cache.SEATS_TTL_S,
    EventView.STATUS: cache.SEATS_TTL_S,
}


async def _build(event_id: int, view: EventView) -> Payload:
    """Read a view from PostgreSQL (once more if the connection was lost). The event's
    version and live sequence number are read first: the data include every change up
    to them, so the seat map doubles as a consistent live snapshot."""
    version, seq = await cache.versions(cache.event_version_key(event_id), seq_key(event_id))
    started = cache.now_ms()
    body, counts = await retry_read_once(lambda: _read_view(event_id, view))
    meta = ",".join(str(n) for n in (seq, counts["available"], counts["held"], counts["booked"]))
    return Payload(cache.etag_of(body), body, version=version, built_ms=started, meta=meta)


async def _read_view(event_id: int, view: EventView) -> tuple[bytes, dict[str, int]]:
    # With the cache on, this fills it: on the small pool that bookings cannot exhaust.
    async with unit_of_work(cache_fill=get_settings().cache_enabled) as uow:
        if view is EventView.SEATS:
            return await seat_map(uow, event_id)
        read = await (detail(uow, event_id) if view is EventView.DETAIL else status(uow, event_id))
    counts = read.availability if isinstance(read, EventDetail) else read
    totals = {"available": counts.available, "held": counts.held, "booked": counts.booked}
    return read.model_dump_json().encode(), totals
