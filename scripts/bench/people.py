"""People at an on-sale, on the asyncio load generator: buyers and a map-staleness probe.

A buyer arrives at a random moment of the arrival window on a connection of its own,
reads the seat map, picks 1-4 free seats next to each other and holds them; on 409 it
reads the map again and picks others (up to MAX_TRIES holds). Some buyers ask for "any
N" instead. A held booking is confirmed (after a short pause: paying) or abandoned.
Every request is recorded (kind, status, times) like the other scenarios' requests.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from scripts.bench.client import Connection, Reply, TransportError, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.seatmap import AVAILABLE, MapReader, status_of

MAX_TRIES = 4  # holds a buyer tries before giving up
BUSY_TRIES = 3  # sends of one request answered 429/503 (honouring Retry-After)
PAY_S = (0.1, 0.5)  # a buyer pays this long after the hold (uniform)
PROBE_WATCH = 16  # holds the probe follows at once
PROBE_PAUSE_S = 0.01
LOGIN_CONCURRENCY = 8
LOGIN_SETUP_S = 120.0  # logins before the sale keep retrying a 429/503 this long
MAX_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class SaleSpec:
    port: int
    event_id: int
    tokens: Sequence[str]  # one per buyer, from real logins
    arrival_s: float
    deadline_s: float  # buyers still busy then are cut short
    timeout_s: float  # per request
    any_share: float = 0.0  # buyers who ask for "any N" seats instead of choosing
    confirm_share: float = 0.7
    seed: int = 20261122


@dataclass
class Sale:
    run: Run = field(default_factory=Run)
    held_at: dict[int, float] = field(default_factory=dict)  # seat -> its hold's 201
    holds: list[tuple[float, list[int]]] = field(default_factory=list)  # (201 at, seats)
    outcomes: Counter[str] = field(default_factory=Counter)  # one per buyer
    tries: Counter[int] = field(default_factory=Counter)  # holds sent per buyer who held
    busy: Counter[tuple[int, bool]] = field(default_factory=Counter)  # (429|503, Retry-After?)


class Buyers:
    """The buyers of one sale; `probe` (if any) is offered every successful hold."""

    def __init__(self, spec: SaleSpec, probe: Probe | None = None) -> None:
        self.spec = spec
        self.sale = Sale()
        self.probe = probe
        self.reader = MapReader()
        self._recorder = Recorder(self.sale.run)
        self._map = request_bytes("GET", f"/events/{spec.event_id}/seats", spec.port)

    async def run(self) -> Sale:
        rng = random.Random(self.spec.seed)
        plans = [(rng.uniform(0, self.spec.arrival_s), rng.random()) for _ in self.spec.tokens]
        run = self.sale.run
        cpu = time.process_time()
        run.started = time.perf_counter()
        tasks = [
            asyncio.ensure_future(self._buyer(token, at, random.Random(seed)))
            for token, (at, seed) in zip(self.spec.tokens, plans, strict=True)
        ]
        _, late = await asyncio.wait(tasks, timeout=self.spec.deadline_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        self.sale.outcomes["cut short by the deadline"] += len(late)
        run.ended = time.perf_counter()
        run.cpu_seconds = time.process_time() - cpu
        return self.sale

    async def _buyer(self, token: str, arrive: float, rng: random.Random) -> None:
        await asyncio.sleep(arrive)
        conn = Connection(self.spec.port, self.spec.timeout_s)
        try:
            if rng.random() < self.spec.any_share:
                booking = await self._hold_any(conn, token, rng)
            else:
                booking = await self._hold_chosen(conn, token, rng)
            if booking is not None:
                await self._pay_or_leave(conn, token, booking, rng)
        finally:
            conn.close()

    async def _hold_chosen(self, conn: Connection, token: str, rng: random.Random) -> int | None:
        want, refused = rng.randint(1, 4), set[int]()
        for attempt in range(1, MAX_TRIES + 1):
            seen = await self._send(conn, "map", self._map)
            if seen is None or seen.status != 200:
                return self._without(f"map read failed ({seen.status if seen else 'no answer'})")
            seats = self.reader.choose(seen.body, seen.etag, want, refused, rng)
            if not seats:
                return self._without("found no free seat on the map")
            body = orjson.dumps({"event_id": self.spec.event_id, "seat_ids": seats})
            reply = await self._post(conn, "hold", "/bookings/", body, token)
            booking = self._held(reply, seats, attempt)
            if booking is not None or reply is None or reply.status != 409:
                return booking
            refused.update(seats)
        return self._without(f"gave up after {MAX_TRIES} refused holds")

    async def _hold_any(self, conn: Connection, token: str, rng: random.Random) -> int | None:
        body = orjson.dumps({"event_id": self.spec.event_id, "quantity": rng.randint(1, 4)})
        for attempt in range(1, MAX_TRIES + 1):
            reply = await self._post(conn, "hold-any", "/bookings/", body, token)
            if reply is None or reply.status != 201:
                if reply is not None and reply.status == 409:
                    continue
                return self._held(reply, [], attempt)
            seats = [int(s["id"]) for s in orjson.loads(reply.body)["seats"]]
            return self._held(reply, seats, attempt)
        return self._without(f"gave up after {MAX_TRIES} refused holds")

    def _held(self, reply: Reply | None, seats: list[int], attempt: int) -> int | None:
        """The booking id of a 201 (recording its seats), else None and the outcome."""
        if reply is None:
            return self._without("hold not answered")
        if reply.status != 201:
            return None if reply.status == 409 else self._without(f"hold {reply.status}")
        for seat in seats:
            self.sale.held_at[seat] = reply.ended
        self.sale.holds.append((reply.ended, seats))
        self.sale.tries[attempt] += 1
        if self.probe is not None and seats:
            self.probe.offer(seats[0], reply.ended)
        return int(orjson.loads(reply.body)["id"])

    async def _pay_or_leave(
        self, conn: Connection, token: str, booking: int, rng: random.Random
    ) -> None:
        if rng.random() >= self.spec.confirm_share:
            self.sale.outcomes["held, then left (the hold will expire)"] += 1
            return
        await asyncio.sleep(rng.uniform(*PAY_S))
        reply = await self._post(conn, "confirm", f"/bookings/{booking}/confirm", b"{}", token)
        status = reply.status if reply is not None else "no answer"
        self.sale.outcomes["held and confirmed" if status == 200 else f"confirm {status}"] += 1

    async def _post(
        self, conn: Connection, kind: str, path: str, body: bytes, token: str
    ) -> Reply | None:
        data = request_bytes("POST", path, self.spec.port, body, token)
        return await self._send(conn, kind, data)

    async def _send(self, conn: Connection, kind: str, data: bytes) -> Reply | None:
        """Send; after a 429 or 503, wait its Retry-After and send again (BUSY_TRIES in all)."""
        for _ in range(BUSY_TRIES):
            reply = await self._recorder.send(conn, kind, data)
            if reply is None or reply.status not in (429, 503):
                return reply
            self.sale.busy[(reply.status, reply.retry_after is not None)] += 1
            await asyncio.sleep(min(float(reply.retry_after or 1), MAX_RETRY_AFTER_S))
        return reply

    def _without(self, text: str) -> int | None:
        """Record why a buyer ends without a booking (no booking: None)."""
        self.sale.outcomes[text] += 1
        return None


class Probe:
    """Polls the public seat map; how long after a hold's 201 the map stops offering it."""

    def __init__(self, port: int, event_id: int, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.request = request_bytes("GET", f"/events/{event_id}/seats", port)
        self.watching: dict[int, float] = {}  # seat -> when its hold was answered
        self.lags: list[float] = []  # seconds, one per followed hold
        self.offered = 0
        self.polls: list[float] = []  # seconds each poll took
        self.errors: Counter[str] = Counter()

    def offer(self, seat: int, held_at: float) -> None:
        if len(self.watching) < PROBE_WATCH:
            self.watching[seat] = held_at
            self.offered += 1

    async def run(self, stop: asyncio.Event, grace_s: float) -> None:
        """Poll until `stop`, then until every followed hold is seen (at most `grace_s`)."""
        conn = Connection(self.port, self.timeout_s)
        stopped_at: float | None = None
        try:
            while stopped_at is None or (
                self.watching and time.perf_counter() - stopped_at < grace_s
            ):
                await self._poll(conn)
                await asyncio.sleep(PROBE_PAUSE_S)
                if stopped_at is None and stop.is_set():
                    stopped_at = time.perf_counter()
        finally:
            conn.close()

    async def _poll(self, conn: Connection) -> None:
        try:
            reply = await conn.send(self.request)
        except (TransportError, OSError, TimeoutError) as exc:  # counted, not fatal
            self.errors[type(exc).__name__] += 1
            return
        self.polls.append(reply.ended - reply.started)
        if reply.status != 200:
            self.errors[f"status {reply.status}"] += 1
            return
        for seat, held_at in list(self.watching.items()):
            if status_of(reply.body, seat) not in (AVAILABLE, None):
                self.lags.append(max(0.0, reply.ended - held_at))
                del self.watching[seat]


# -- logging in, for real, before the timed part -------------------------------------


def login_request(port: int, email: str, password: str, address: str | None = None) -> bytes:
    """`POST /auth/login` with the OAuth2 password form (from `address`, as a proxy says)."""
    form = urllib.parse.urlencode({"username": email, "password": password}).encode()
    headers = [("X-Forwarded-For", address)] if address else []
    return request_bytes(
        "POST",
        "/auth/login",
        port,
        form,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


async def log_in(port: int, emails: Sequence[str], password: str, timeout_s: float) -> list[str]:
    """Access tokens from real logins, LOGIN_CONCURRENCY at a time (setup, not measured).

    A 429 or 503 is retried after its Retry-After, as a well-behaved client would.
    """
    gate = asyncio.Semaphore(LOGIN_CONCURRENCY)
    give_up = time.perf_counter() + LOGIN_SETUP_S

    async def one(email: str) -> str:
        async with gate:
            conn = Connection(port, timeout_s)
            try:
                while True:
                    reply = await conn.send(login_request(port, email, password))
                    if reply.status not in (429, 503) or time.perf_counter() > give_up:
                        break
                    await asyncio.sleep(min(float(reply.retry_after or 1), MAX_RETRY_AFTER_S))
            finally:
                conn.close()
        if reply.status != 200:
            raise BenchError(f"login of {email} answered {reply.status}: {reply.body[:200]!r}")
        return str(orjson.loads(reply.body)["access_token"])

    return list(await asyncio.gather(*(one(e) for e in emails)))


# -- open files -----------------------------------------------------------------------


def open_files(pid: int | None = None) -> int:
    try:
        return len(os.listdir(f"/proc/{pid or 'self'}/fd"))
    except OSError:
        return -1


class FilesPeak:
    """The most files open at once in this process and in the API workers."""

    def __init__(self, workers: Sequence[int]) -> None:
        self.workers = list(workers)
        self.harness = open_files()
        self.api = {pid: open_files(pid) for pid in self.workers}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(0.25)

    def sample(self) -> None:
        self.harness = max(self.harness, open_files())
        for pid in self.workers:
            self.api[pid] = max(self.api[pid], open_files(pid))

    def facts(self) -> str:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"harness {self.harness}, API workers {list(self.api.values())} (limit {soft} each)"


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50, p99 and max of `values` (seconds) in ms."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(pct: float) -> float:
        rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[rank] * scale, 1)

    return {"p50": at(50), "p99": at(99), "max": round(ordered[-1] * scale, 1)}
