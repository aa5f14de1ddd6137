"""Booking storms for the fault suite, and the invariant check they end with.

A storm is N seat holds (exact `seat_ids` or any `quantity`), each with its own
`Idempotency-Key`, fired by a bounded number of clients at one or more API bases (real
uvicorn processes, or the app in-process over ASGI). Each client behaves as a real one
should: a transport error, a 503, or a 409 "same key still in progress" is retried with
the same key and body (round-robin, so a retry goes to the next base) until a final
answer or the storm's deadline. Every answer is tallied, the retried ones too.

`check_invariants` then compares the database with what the clients were told (DESIGN §4):
no seat in two active bookings, no half-held booking, the seats taken are exactly the
seats of the 201s, and no key booked twice.
"""

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.idempotency import IN_PROGRESS
from app.core.config import get_settings
from app.core.db import db
from tests import factories

ACTIVE = "('pending', 'confirmed')"
DOUBLE_CLAIMS = text(
    f"""
    SELECT bs.seat_id, array_agg(b.id) AS bookings
    FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
    WHERE b.status IN {ACTIVE}
    GROUP BY bs.seat_id HAVING count(*) > 1
    """
)
SEATS_HELD = text("SELECT id, booking_id FROM seats WHERE event_id = :e AND status <> 'available'")
# An active booking with a seat that is not held by it (free, or another booking's).
HALF_HELD = text(
    f"""
    SELECT b.id, bs.seat_id, s.status, s.booking_id
    FROM bookings b
    JOIN booking_seats bs ON bs.booking_id = b.id
    JOIN seats s ON s.id = bs.seat_id
    WHERE b.event_id = :e AND b.status IN {ACTIVE}
      AND (s.status = 'available' OR s.booking_id IS DISTINCT FROM b.id)
    """
)
# A taken seat whose booking is missing or not active.
ORPHAN_SEATS = text(
    f"""
    SELECT s.id, s.booking_id, b.status
    FROM seats s LEFT JOIN bookings b ON b.id = s.booking_id
    WHERE s.event_id = :e AND s.status <> 'available'
      AND (b.id IS NULL OR b.status NOT IN {ACTIVE})
    """
)
BOOKINGS = text(
    "SELECT b.id, b.status, b.idempotency_key, array_remove(array_agg(bs.seat_id), NULL)"
    " FROM bookings b LEFT JOIN booking_seats bs ON bs.booking_id = b.id"
    " WHERE b.event_id = :e GROUP BY b.id"
)
TWICE_BY_KEY = text(
    "SELECT user_id, idempotency_key, array_agg(id) FROM bookings"
    " WHERE event_id = :e AND idempotency_key IS NOT NULL"
    " GROUP BY user_id, idempotency_key HAVING count(*) > 1"
)
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name = 'evently' AND datname = current_database()"
)
REFUSED = {"overloaded", "database_unavailable"}
UNACKNOWLEDGED = "seats are taken in the database but 201s promised"
Answer = httpx.Response | BaseException


# --- killing the app's PostgreSQL backends ---------------------------------------------


def plain_dsn(database_url: str | None = None) -> str:
    """An asyncpg DSN for `database_url` (default: the app's)."""
    url = make_url(database_url or get_settings().database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def terminate_app_backends(database_url: str | None = None) -> int:
    """pg_terminate_backend on every connection of the app (application_name 'evently')."""
    conn = await asyncpg.connect(
        plain_dsn(database_url), server_settings={"application_name": "evently-killer"}
    )
    try:
        return int(await conn.fetchval(TERMINATE))
    finally:
        await conn.close()


@dataclass
class Kills:
    rounds: int = 0
    terminated: int = 0


async def kill_backends_until(
    done: asyncio.Event,
    kills: Kills,
    seed: int = 5,
    every: tuple[float, float] = (0.2, 0.5),
    database_url: str | None = None,
) -> None:
    """Terminate the app's backends every `every` seconds (uniform) until `done` is set."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(
        plain_dsn(database_url), server_settings={"application_name": "evently-killer"}
    )
    try:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), rng.uniform(*every))
            except TimeoutError:
                kills.terminated += int(await conn.fetchval(TERMINATE))
                kills.rounds += 1
    finally:
        await conn.close()


# --- the holds ---------------------------------------------------------------------------


def random_holds(
    event_id: int, seat_ids: list[int], buyers: list[factories.Account], n: int, seed: int
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(body, headers) of `n` holds of 1-3 random seats, without Idempotency-Key."""
    rng = random.Random(seed)
    return [
        (
            {"event_id": event_id, "seat_ids": rng.sample(seat_ids, rng.randint(1, 3))},
            buyers[i % len(buyers)].headers,
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class Hold:
    """One client's hold: its body and headers, an Idempotency-Key among them."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


def mixed_holds(
    event_id: int,
    seat_ids: list[int],
    buyers: list[factories.Account],
    n: int,
    seed: int,
    any_share: float = 0.3,
) -> list[Hold]:
    """`n` holds, each with its own key: 1-3 chosen seats, or (`any_share` of them) any 1-2."""
    rng = random.Random(seed)
    holds = []
    for i in range(n):
        body: dict[str, Any] = {"event_id": event_id}
        if rng.random() < any_share:
            body["quantity"] = rng.randint(1, 2)
        else:
            body["seat_ids"] = rng.sample(seat_ids, rng.randint(1, 3))
        key = f"storm-{seed}-{i}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        holds.append(Hold(body, {**buyers[i % len(buyers)].headers, "Idempotency-Key": key}))
    return holds


async def buyers(n: int) -> list[factories.Account]:
    """`n` customer accounts with their tokens."""
    return [await factories.account() for _ in range(n)]


async def seat_ids_in_db(event_id: int, engine: AsyncEngine | None = None) -> list[int]:
    """The event's seat ids, straight from the database (no API process needed yet)."""
    query = text("SELECT id FROM seats WHERE event_id = :e ORDER BY id")
    async with (engine or db.engine).connect() as conn:
        return list((await conn.scalars(query, {"e": event_id})).all())


async def seat_ids_of(client: httpx.AsyncClient, event_id: int) -> list[int]:
    return [s["id"] for s in (await client.get(f"/events/{event_id}/seats")).json()["seats"]]


# --- tallies -------------------------------------------------------------------------------


def label(answer: Answer) -> int | str:
    """A status code, or the name of the transport error that replaced the answer."""
    if isinstance(answer, BaseException):
        return f"raised {type(answer).__name__}"
    return answer.status_code


def tally(answers: Sequence[Answer]) -> Counter[int | str]:
    """Statuses of the answers; anything but 201, 409 or a 503 with Retry-After fails."""
    found: Counter[int | str] = Counter()
    for a in answers:
        if isinstance(a, BaseException):
            found[f"raised {type(a).__name__}: {str(a)[:120]}"] += 1
            continue
        found[a.status_code] += 1
        if a.status_code == 503:
            assert a.json()["code"] in REFUSED, a.text
            assert int(a.headers["retry-after"]) >= 1
            found[a.json()["code"]] += 1
    assert {k for k in found if isinstance(k, int)} <= {201, 409, 503}, found
    assert all(isinstance(k, int) or k in REFUSED for k in found), found
    return found


def retryable(answer: Answer) -> bool:
    """What a well-behaved client retries with the same key: no answer, a 503, or a 409
    saying the first attempt with this key is still running."""
    if isinstance(answer, httpx.TransportError):
        return True
    if isinstance(answer, BaseException):
        return False
    if answer.status_code == 503:
        return True
    return answer.status_code == 409 and answer.json().get("detail") == IN_PROGRESS


@dataclass
class Outcome:
    hold: Hold
    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> Answer | None:
        return self.answers[-1] if self.answers else None

    @property
    def settled(self) -> bool:
        """Whether the client got an answer it does not retry."""
        return self.final is not None and not retryable(self.final)


@dataclass
class StormReport:
    outcomes: list[Outcome]
    elapsed: float

    @property
    def answers(self) -> list[Answer]:
        return [a for o in self.outcomes for a in o.answers]

    @property
    def responses(self) -> list[httpx.Response]:
        """The final answers that are responses (what the invariant check compares)."""
        return [o.final for o in self.outcomes if isinstance(o.final, httpx.Response)]

    @property
    def statuses(self) -> Counter[int | str]:
        """Every answer, the retried ones too."""
        return Counter(label(a) for a in self.answers)

    @property
    def refusals(self) -> Counter[str]:
        """The codes of the 503s (`database_unavailable`, `overloaded`, ...)."""
        return Counter(
            a.json().get("code", "?")
            for a in self.answers
            if isinstance(a, httpx.Response) and a.status_code == 503
        )

    @property
    def finals(self) -> Counter[int | str]:
        return Counter(label(o.final) if o.final is not None else "none" for o in self.outcomes)

    @property
    def server_errors(self) -> Counter[int]:
        """5xx answers that are not an honest 503 with Retry-After: bugs."""
        return Counter(
            a.status_code
            for a in self.answers
            if isinstance(a, httpx.Response)
            and a.status_code >= 500
            and not (a.status_code == 503 and int(a.headers.get("retry-after", "0")) >= 1)
        )

    @property
    def retried(self) -> int:
        return sum(len(o.answers) - 1 for o in self.outcomes)

    @property
    def unsettled(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.settled]

    def summary(self) -> str:
        return (
            f"{len(self.outcomes)} holds in {self.elapsed:.1f}s, {self.retried} retries; "
            f"final {dict(self.finals)}; every answer {dict(self.statuses)} "
            f"(503s: {dict(self.refusals)}); "
            f"5xx other than 503: {sum(self.server_errors.values())}"
        )


# --- the storm -----------------------------------------------------------------------------


@asynccontextmanager
async def api_clients(
    base_urls: Sequence[str], request_timeout: float = 10.0
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One real HTTP client per API base URL."""
    clients = [httpx.AsyncClient(base_url=url, timeout=request_timeout) for url in base_urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@dataclass
class Progress:
    """How far a running storm is, for a test that breaks something mid-storm."""

    settled: int = 0
    _waiting: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    def one_settled(self) -> None:
        self.settled += 1
        for mark, reached in self._waiting:
            if self.settled >= mark:
                reached.set()

    async def reached(self, settled: int) -> None:
        """Return once `settled` holds (no more than the storm has) have their answer."""
        if self.settled < settled:
            reached = asyncio.Event()
            self._waiting.append((settled, reached))
            await reached.wait()


async def run_storm(
    clients: Sequence[httpx.AsyncClient],
    holds: Sequence[Hold],
    *,
    concurrency: int = 32,
    deadline_s: float = 60.0,
    max_pause: float = 0.25,
    progress: Progress | None = None,
    think: float = 0.0,
) -> StormReport:
    """Fire `holds` from `concurrency` clients at once; each hold is retried (same key,
    next base) while its answer is retryable and the deadline has not passed. The pause
    before a retry is Retry-After capped at `max_pause` (a test cannot wait seconds).
    `think`: a client waits up to that many seconds before its next hold, so that a small
    storm lasts long enough for a fault to land in the middle of it."""
    progress = progress or Progress()
    outcomes = [Outcome(h) for h in holds]
    queue: asyncio.Queue[tuple[int, Outcome]] = asyncio.Queue()
    for item in enumerate(outcomes):
        queue.put_nowait(item)
    started = time.perf_counter()
    deadline = started + deadline_s

    async def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        while not queue.empty():
            index, outcome = queue.get_nowait()
            await _settle(clients, index, outcome, deadline, rng, max_pause)
            progress.one_settled()
            if think:
                await asyncio.sleep(rng.uniform(0, think))

    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return StormReport(outcomes, time.perf_counter() - started)


async def _settle(
    clients: Sequence[httpx.AsyncClient],
    index: int,
    outcome: Outcome,
    deadline: float,
    rng: random.Random,
    max_pause: float,
) -> None:
    attempt = 0
    while True:
        client = clients[(index + attempt) % len(clients)]
        answer: Answer
        try:
            answer = await client.post(
                "/bookings/", json=outcome.hold.body, headers=outcome.hold.headers
            )
        except httpx.TransportError as exc:
            answer = exc
        outcome.answers.append(answer)
        attempt += 1
        if not retryable(answer) or time.perf_counter() > deadline:
            return
        await asyncio.sleep(_pause(answer, max_pause) * rng.uniform(0.5, 1.0))


def _pause(answer: Answer, max_pause: float) -> float:
    if isinstance(answer, httpx.Response) and "retry-after" in answer.headers:
        return min(float(answer.headers["retry-after"]), max_pause)
    return max_pause / 2


async def replay_differences(
    clients: Sequence[httpx.AsyncClient], report: StormReport, concurrency: int = 16
) -> list[str]:
    """Send every hold that won a 201 once more with its key (a client that never saw
    the answer would): the same booking must come back, and nothing new be booked."""
    won = [o for o in report.outcomes if label(o.final) == 201]
    gate = asyncio.Semaphore(concurrency)

    async def replay(index: int, outcome: Outcome) -> str | None:
        first = outcome.final
        assert isinstance(first, httpx.Response)
        async with gate:
            again = await clients[index % len(clients)].post(
                "/bookings/", json=outcome.hold.body, headers=outcome.hold.headers
            )
        if again.status_code == 201 and again.json()["id"] == first.json()["id"]:
            return None
        return f"key {outcome.hold.key}: first booking {first.json()['id']}, replay {again.text}"

    found = await asyncio.gather(*(replay(i, o) for i, o in enumerate(won)))
    return [f for f in found if f is not None]


# --- the invariants --------------------------------------------------------------------------


async def violations(
    event_id: int, responses: Sequence[httpx.Response], engine: AsyncEngine | None = None
) -> list[str]:
    """Every way the database and the 201 responses disagree with the invariants."""
    async with (engine or db.engine).connect() as conn:
        doubles = (await conn.execute(DOUBLE_CLAIMS)).all()
        held = dict((await conn.execute(SEATS_HELD, {"e": event_id})).all())
    found = [f"seat {seat} is in active bookings {ids}" for seat, ids in doubles]
    sold: dict[int, int] = {}
    for r in responses:
        if r.status_code == 201:
            for seat in r.json()["seats"]:
                if seat["id"] in sold:
                    first, second = sold[seat["id"]], r.json()["id"]
                    found.append(f"seat {seat['id']} was sold to bookings {first} and {second}")
                sold[seat["id"]] = r.json()["id"]
    if len(held) != len(sold):
        found.append(f"{len(held)} {UNACKNOWLEDGED} {len(sold)}")
    found += [
        f"seat {s} points at booking {held.get(s)}, promised to {b}"
        for s, b in sold.items()
        if held.get(s) != b
    ]
    return found


async def check_invariants(
    event_id: int, report: StormReport, engine: AsyncEngine | None = None
) -> list[str]:
    """`violations`, plus: no half-held booking, no seat taken by a booking that is not
    active, every 201's booking saved with exactly its seats, no booking nobody was told
    of, no key that booked twice, and every hold settled."""
    found = await violations(event_id, report.responses, engine)
    async with (engine or db.engine).connect() as conn:
        half = (await conn.execute(HALF_HELD, {"e": event_id})).all()
        orphans = (await conn.execute(ORPHAN_SEATS, {"e": event_id})).all()
        saved = {row[0]: row for row in (await conn.execute(BOOKINGS, {"e": event_id})).all()}
        twice = (await conn.execute(TWICE_BY_KEY, {"e": event_id})).all()
    found += [
        f"active booking {b} has seat {s} that is {st} by booking {o}" for b, s, st, o in half
    ]
    found += [f"seat {s} is taken by booking {b}, which is {st}" for s, b, st in orphans]
    found += [f"key {key} of user {user} made bookings {ids}" for user, key, ids in twice]
    found += _promised_versus_saved(report, saved)
    found += [
        f"hold {o.hold.key} never settled: {label(o.final)}"
        for o in report.unsettled
        if o.final is not None
    ]
    return found


def _promised_versus_saved(report: StormReport, saved: dict[int, Any]) -> list[str]:
    found, told = [], set()
    for outcome in report.outcomes:
        final = outcome.final
        if not isinstance(final, httpx.Response) or final.status_code != 201:
            continue
        promised = final.json()
        told.add(promised["id"])
        row = saved.get(promised["id"])
        seats = sorted(s["id"] for s in promised["seats"])
        if row is None or row[1] not in ("pending", "confirmed") or sorted(row[3]) != seats:
            found.append(f"201 for booking {promised['id']} (seats {seats}), saved as {row}")
        elif row[2] != outcome.hold.key:
            found.append(
                f"booking {promised['id']} was told to key {outcome.hold.key}, saved under {row[2]}"
            )
    found += [
        f"booking {row} was saved but no client was told of it"
        for b, row in saved.items()
        if b not in told
    ]
    return found
