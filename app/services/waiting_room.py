"""The virtual waiting room of a big on-sale (DESIGN §9): join, wait, be admitted, book.

The line lives in Redis (`app.infra.waiting_room`); passes are signed
(`app.core.admission`). Joining and polling never touch PostgreSQL in the steady state:
the caller is known from the access token alone, and the event's settings come from
the per-process `memo.sale_gates` (5 s) or from Redis. A hold on a queued event checks
its admission token's signature and expiry, nothing else.

**Fails closed.** While Redis cannot answer, joins, polls and leaves are 503 with
Retry-After, and a hold still needs a genuine admission token: nobody gets in without
one. (The rate limiter fails open instead: it protects capacity, not fairness.)
"""

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.core import admission, memo
from app.core.config import get_settings
from app.core.db import UnitOfWork, retry_read_once, unit_of_work
from app.core.errors import (
    AdmissionRequired,
    Forbidden,
    InvalidState,
    NotFound,
    QueueUnavailable,
)
from app.crud import waiting_room as crud
from app.infra import ratelimit
from app.infra import waiting_room as line
from app.infra.waiting_room import NEED_CONFIG, Call, Config, Place, State
from app.models import Event, EventStatus, Role, User
from app.schemas.waiting_room import QueueState, QueueStats, QueueStatus

# Seconds since the epoch; tests advance a fake clock through the same arithmetic.
clock: Callable[[], float] = time.time

RETRY_AFTER_S = 1  # Redis away: the guard tries it again after a second
RETRY_AFTER_MAX_S = 3
POLL_AFTER_S = 2.0
GOLDEN = 0.6180339887
MAX_POLL_AFTER_S = 15
OPENING_SPREAD_S = 3
OPENING_POLLS_PER_S = 500
KEEP_AFTER_EVENT_S = 86_400  # the line's keys outlive the event by a day
STATES = {
    State.WAITING: QueueState.WAITING,
    State.ADMITTED: QueueState.ADMITTED,
    State.USED: QueueState.BOOKED,
    State.LEFT: QueueState.LEFT,
    State.EXPIRED: QueueState.EXPIRED,
}


def now_ms() -> int:
    return int(clock() * 1000)


@dataclass(frozen=True)
class SaleGate:
    """What a hold or a join must know about an event's sale, remembered per process."""

    event_id: int
    status: EventStatus
    starts_at: datetime
    sale_starts_at: datetime | None
    queued: bool
    rate: int
    minutes: int
    version_ms: int

    def config(self) -> Config:
        opens = self.sale_starts_at.timestamp() * 1000 if self.sale_starts_at else 0
        on = self.queued and self.status == EventStatus.PUBLISHED
        return Config(on, self.rate, self.minutes, int(opens), self.version_ms)

    def ttl_s(self, at_ms: int) -> int:
        return int(self.starts_at.timestamp() - at_ms / 1000) + KEEP_AFTER_EVENT_S


def _gate_of(event: Event) -> SaleGate:
    return SaleGate(
        event.id,
        event.status,
        event.starts_at,
        event.sale_starts_at,
        event.queue_enabled,
        event.queue_admit_per_second,
        event.queue_admission_minutes,
        int(event.updated_at.timestamp() * 1000),
    )


async def sale_gate(event_id: int) -> SaleGate | None:
    """The event's sale settings: from this process's memory (at most SALE_GATE_TTL_S
    old), else one read, shared by every request that misses meanwhile (when the entry
    of a hot event expires, a thousand joins in flight must not each take a database
    connection). None when the event does not exist (not remembered)."""
    known: SaleGate | None = memo.sale_gates.get(event_id)
    if known is not None:
        return known
    loading = _loading.get(event_id)
    if loading is None:
        loading = asyncio.create_task(_load_gate(event_id), name=f"sale-gate-{event_id}")
        _loading[event_id] = loading
        loading.add_done_callback(lambda _: _loading.pop(event_id, None))
    return await asyncio.shield(loading)


_loading: dict[int, "asyncio.Task[SaleGate | None]"] = {}


async def _load_gate(event_id: int) -> SaleGate | None:
    # On the small read pool: a hold asking for it already holds a main-pool connection
    # (its idempotency claim), so a rush of holds on the main pool would wait for itself.
    async with unit_of_work(cache_fill=True) as uow:
        row = await retry_read_once(
            lambda: crud.sale_settings(uow.session, event_id), before_retry=uow.rollback
        )
    if row is None:
        return None
    status, starts_at, sale_starts_at, queued, rate, minutes, updated_at = row
    gate = SaleGate(
        event_id,
        EventStatus(status),
        starts_at,
        sale_starts_at,
        queued,
        rate,
        minutes,
        int(updated_at.timestamp() * 1000),
    )
    memo.sale_gates[event_id] = gate
    return gate


# -- the hold's side ------------------------------------------------------------------


async def require_admission(user_id: int, event_id: int, token: str | None) -> bool:
    """Refuse a hold before the sale opens, or on a queued event without a genuine,
    unexpired admission token of this user for this event. True when the event is
    queued (the hold uses its admission: call `admission_used` after it commits)."""
    gate = await sale_gate(event_id)
    if gate is None:
        return False  # the hold itself answers 404
    at = now_ms()
    queued = gate.config().enabled
    if queued:
        _check_admission(event_id, user_id, token, at)
    opens = gate.config().opens_ms
    if at < opens:
        raise InvalidState(
            f"The sale of event {event_id} opens at {gate.sale_starts_at}.",
            code="sale_not_started",
            sale_starts_at=str(gate.sale_starts_at),
        )
    return queued


def _check_admission(event_id: int, user_id: int, token: str | None, at: int) -> None:
    queue = f"/events/{event_id}/queue"
    if token is None:
        raise AdmissionRequired(
            f"Event {event_id} has a waiting room: join it with POST {queue}, then book with "
            "the `Admission-Token` it gives you once admitted.",
            queue=queue,
        )
    expires = admission.admission_expiry(token, event_id, user_id)
    if expires is None:
        raise AdmissionRequired(
            "This admission token is not valid for you and this event.",
            code="admission_invalid",
            queue=queue,
        )
    if expires <= at:
        raise AdmissionRequired(
            "Your admission has expired; join the waiting room again.",
            code="admission_expired",
            queue=queue,
        )


async def admission_used(event_id: int, user_id: int) -> None:
    """After a hold made with an admission commits: the admission will not come back to
    the line when it expires (best effort: if Redis is away, it does, one extra slot)."""
    await line.used(event_id, user_id, now_ms())


# -- the fan's side -------------------------------------------------------------------


async def join(user_id: int, event_id: int, queue_token: str | None, client_ip: str) -> QueueStatus:
    """Take a place in the event's line (or get back the one you have)."""
    await ratelimit.hit(ratelimit.queue_join_per_ip(), client_ip)
    gate = await sale_gate(event_id)  # a database read only on this process's miss
    if gate is None or gate.status == EventStatus.DRAFT:
        raise NotFound(f"Event {event_id} does not exist.")
    at = now_ms()
    if gate.status != EventStatus.PUBLISHED or gate.starts_at.timestamp() * 1000 <= at:
        raise InvalidState(f"Event {event_id} is not on sale.")
    if not gate.queued:
        raise InvalidState(
            f"Event {event_id} has no waiting room: book directly.", code="queue_not_enabled"
        )
    call = _call("join", event_id, user_id, at, queue_token, None)
    found = await line.place(event_id, replace(call, config=gate.config(), ttl_s=gate.ttl_s(at)))
    return _status(event_id, user_id, _answered(found), at)


async def status(
    user_id: int, event_id: int, queue_token: str | None, admission_token: str | None
) -> QueueStatus:
    """Where the caller stands now, from Redis alone (admission advances as time passes).

    Someone Redis does not know who presents a genuine queue token (or admission token)
    gets that place back: this is how a lost line is rebuilt."""
    at = now_ms()
    call = _call("status", event_id, user_id, at, queue_token, admission_token)
    found = await line.place(event_id, call)
    if found == NEED_CONFIG:  # Redis lost the settings too: read them once
        gate = await sale_gate(event_id)
        if gate is None or not gate.queued:
            raise NotFound(f"Event {event_id} has no waiting room.", code="not_in_queue")
        found = await line.place(event_id, replace(call, config=gate.config()))
    place = _answered(found)
    if place.state == State.NOT_IN_QUEUE:
        raise NotFound(
            f"You are not in the waiting room of event {event_id}: join with "
            f"POST /events/{event_id}/queue.",
            code="not_in_queue",
        )
    return _status(event_id, user_id, place, at)


async def leave(user_id: int, event_id: int) -> QueueStatus:
    """Give up your place (or your unused admission: the next in line gets it)."""
    at = now_ms()
    found = await line.place(event_id, Call("leave", at, user_id))
    if found == NEED_CONFIG:
        raise NotFound(f"You are not in the waiting room of event {event_id}.", code="not_in_queue")
    place = _answered(found)
    if place.state in (State.NOT_IN_QUEUE, State.EXPIRED, State.USED):
        raise NotFound(f"You are not in the waiting room of event {event_id}.", code="not_in_queue")
    return _status(event_id, user_id, place, at)


def _call(
    op: str,
    event_id: int,
    user_id: int,
    at: int,
    queue_token: str | None,
    admission_token: str | None,
) -> Call:
    held = admission.read_queue(queue_token, event_id, user_id)
    admitted_until = admission.admission_expiry(admission_token, event_id, user_id)
    return Call(
        op,
        at,
        user_id,
        draw=admission.early_draw(event_id, user_id),
        restore_key=held.order if held is not None else None,
        admission_expires_ms=admitted_until if admitted_until and admitted_until > at else None,
        rebuild_ms=get_settings().queue_rebuild_s * 1000,
    )


def _answered(found: Place | int | None) -> Place:
    if found is None:  # spread the retries: thousands of fans were told at once
        raise QueueUnavailable(retry_after=random.randint(1, RETRY_AFTER_MAX_S))
    assert isinstance(found, Place), found
    return found


def _status(event_id: int, user_id: int, place: Place, at: int) -> QueueStatus:
    opens_in = max(0, place.opens_ms - at)
    paused = max(0, place.pause_ms - at)
    state = STATES.get(place.state, QueueState.WAITING) if place.enabled else QueueState.OFF
    out = QueueStatus(
        event_id=event_id,
        state=state,
        position=None,
        ahead=None,
        estimated_wait_s=None,
        queue_token=None,
        opens_in_s=math.ceil(opens_in / 1000) if opens_in else None,
        rebuilding=paused > 0,
        poll_after_s=POLL_AFTER_S,
    )
    if place.state == State.WAITING and place.key is not None and place.rank is not None:
        out.queue_token = admission.sign_queue(event_id, user_id, place.key)
        # Before the sale opens the early arrivals' order is not drawn yet: no position.
        ahead = place.rank if not opens_in else place.waiting // 2
        if not opens_in:
            out.position, out.ahead = place.rank + 1, place.rank
        wait_s = (opens_in + paused) / 1000 + (ahead + 1) / max(1, place.rate)
        out.estimated_wait_s = math.ceil(wait_s)
        out.poll_after_s = _poll_after(wait_s, opens_in / 1000, user_id, place.waiting)
    elif place.expires_ms is not None and place.expires_ms > at:
        out.admission_token = admission.sign_admission(event_id, user_id, place.expires_ms)
        out.admission_expires_at = datetime.fromtimestamp(place.expires_ms / 1000, UTC)
    return out


def _poll_after(wait_s: float, opens_in_s: float, user_id: int, waiting: int) -> float:
    """When to ask again: after a tenth of the wait (10,000 fans at 25 a second then poll
    about 1,300 times a second in all; those near the front every second, so they learn
    of their admission within a second of it). Before the sale opens: right after it
    opens, when places are drawn, spread evenly by user over OPENING_SPREAD_S or more (at
    most OPENING_POLLS_PER_S of the early fans come back each second), so that the first
    fans admitted do not all learn of it (and hold) at the same instant."""
    if opens_in_s > 0:
        if opens_in_s > 2 * MAX_POLL_AFTER_S:
            return 2 * MAX_POLL_AFTER_S
        spread = max(OPENING_SPREAD_S, waiting / OPENING_POLLS_PER_S)
        share = (user_id * GOLDEN) % 1.0  # evenly spread, whatever the ids
        return round(opens_in_s + spread * share, 1)
    return round(min(MAX_POLL_AFTER_S, max(1.0, wait_s / 10)), 1)


# -- the organizer's side -------------------------------------------------------------


def event_saved(uow: UnitOfWork, event: Event, queue_touched: bool) -> None:
    """After an event's creation or change commits: this process forgets its sale
    settings, and the line switches to them (settled at the old rate up to now)."""
    gate = _gate_of(event)

    async def after() -> None:
        memo.sale_gates.pop(gate.event_id, None)
        if gate.queued or queue_touched:
            at = now_ms()
            await line.configure(gate.event_id, gate.config(), at, gate.ttl_s(at))

    uow.after_commit(after)


async def stats(uow: UnitOfWork, user: User, event_id: int) -> QueueStats:
    """Queue length, admissions, abandonment: the event's organizer or an admin."""
    event = await uow.session.get(Event, event_id)
    if event is None:
        raise NotFound(f"Event {event_id} does not exist.")
    if user.role != Role.ADMIN and event.organizer_id != user.id:
        raise Forbidden("You can only manage your own events.")
    gate, at = _gate_of(event), now_ms()
    found = await line.stats(event_id, at)
    if found == NEED_CONFIG:
        found = await line.stats(event_id, at, gate.config())
    if found is None:
        raise QueueUnavailable(retry_after=RETRY_AFTER_S)
    assert isinstance(found, line.Stats)
    opened = max(gate.config().opens_ms, found.born_ms)
    seconds = (at - opened) / 1000
    return QueueStats(
        event_id=event_id,
        enabled=gate.queued,
        admit_per_second=gate.rate,
        admission_minutes=gate.minutes,
        sale_starts_at=gate.sale_starts_at,
        waiting=found.waiting,
        admitted_now=found.admitted_now,
        joined=found.joined,
        restored=found.restored,
        admitted=found.admitted,
        booked=found.used,
        left=found.left,
        expired=found.expired,
        abandonment_rate=round((found.left + found.expired) / found.joined, 4)
        if found.joined
        else 0.0,
        admitted_per_second=round(found.admitted / seconds, 2) if seconds > 0 else None,
        estimated_drain_s=math.ceil(found.waiting / max(1, gate.rate)),
    )
