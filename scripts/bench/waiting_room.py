"""waiting-room: a big on-sale behind the virtual waiting room, then the same sale without.

Queue on: FANS fans join `POST /events/{id}/queue` within JOIN_S seconds (the sale opens
at 80 % of that: those before are drawn into a random order, the rest line up), then
poll `GET /events/{id}/queue/me` at the pace the answers ask (`poll_after_s`, +-20 %);
an admitted fan holds 1-4 seats ("any N") with the `Admission-Token` and confirms. The
organizer's stats are sampled meanwhile (the admission rate). The rate is what an
organizer would set on this machine: about a third of what its booking path takes in
holds plus confirms (docs/PERFORMANCE.md, confirm-flow), so admitted fans are served at
once while the rest wait. Once sold out, the poll
capacity is measured on its own: a closed loop of polls by fans still in line.
Queue off: the same fans arrive as fast at another event of the same size and hold at
once. Fans are bulk-inserted with one password hash and tokens minted by the harness
(the server's SECRET_KEY), like the other scenarios' customers; their requests share a
pool of keep-alive connections (the machine's open-files limit is below 2 x FANS).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uvloop
from sqlalchemy import insert

from scripts.bench import loadgen
from scripts.bench.client import Connection, Reply, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.people import percentiles
from scripts.bench.report import Result
from scripts.bench.scenarios import (
    Context,
    Measured,
    _invariants,
    _judge,
    _sockets,
    _warm_pools,
)
from scripts.bench.seed import PASSWORD, TOKEN_MINUTES, seated

JOIN_P99_MS = 50
POLL_RPS = 5000
HOLD_P99_MS = 100
BUSY_TRIES = 3
OPENS_AT = 0.8  # of the arrival window
WARM_SEATS = 100
LAG_PROBE_S = 0.005
LAG_REPORTED_S = 0.02
WARM_FANS = 32


@dataclass(frozen=True)
class Sizes:
    fans: int
    seats: int
    rate: int  # admit_per_second; arrivals (fans / join_s) are many times this
    join_s: float
    connections: int  # the fans' shared keep-alive pool
    capacity_s: float
    capacity_connections: int
    deadline_s: float


FULL = Sizes(10_000, 2_000, 25, 5.0, 512, 3.0, 64, 120.0)
QUICK = Sizes(1_000, 200, 20, 1.0, 128, 1.0, 16, 30.0)


# -- set-up ---------------------------------------------------------------------------


@dataclass
class Seeded:
    organizer: str  # access token
    queued: int  # event ids
    plain: int
    warm: int  # a small queued event on which the server is warmed up first
    fans: list[str]  # access tokens


async def _seed(sizes: Sizes) -> Seeded:
    """Through the application's services, with the server's settings (see seed.py)."""
    from app.core.db import db, transaction, unit_of_work
    from app.core.redis import redis
    from app.core.security import create_access_token, hash_password
    from app.models import Role, User
    from app.schemas.event import QueueSettings
    from app.services import events, users

    try:
        async with transaction() as uow:
            organizer, _ = await users.ensure_user(
                uow, "organizer@bench.example", PASSWORD, Role.ORGANIZER, "Bench Organizer"
            )
        starts = datetime.now(UTC) + timedelta(days=300)
        ids = []
        plan = (
            ("Waiting Room", True, sizes.seats, sizes.rate),
            ("No Waiting Room", False, sizes.seats, sizes.rate),
            ("Warm-up", True, WARM_SEATS, 10_000),
        )
        for name, queue, seats, rate in plan:
            spec = seated(name, seats, starts)
            spec.queue = QueueSettings(enabled=queue, admit_per_second=rate)
            async with transaction() as uow:
                created = await events.create(uow, organizer, spec)
                await events.publish(uow, organizer, created.id)
            ids.append(created.id)
        rows = [
            {
                "email": f"fan{n}@bench.example",
                "full_name": f"Fan {n}",
                "password_hash": hash_password(PASSWORD) if n == 0 else None,
                "role": Role.CUSTOMER,
                "is_active": True,
            }
            for n in range(sizes.fans)
        ]
        for row in rows:
            row["password_hash"] = rows[0]["password_hash"]
        async with unit_of_work() as uow:
            stmt = insert(User).returning(User.id, sort_by_parameter_order=True)
            fan_ids = list((await uow.session.scalars(stmt, rows)).all())
            await uow.commit()
        token = create_access_token(organizer.id, minutes=TOKEN_MINUTES)
        fans = [create_access_token(i, minutes=TOKEN_MINUTES) for i in fan_ids]
        return Seeded(token, ids[0], ids[1], ids[2], fans)
    finally:
        await redis.close()
        await db.dispose()


# -- the fans ----------------------------------------------------------------------------


async def _open_evenly(port: int, count: int, pids: list[int]) -> list[Connection]:
    """`count` used keep-alive connections, split evenly between the API workers `pids`,
    as a load balancer in front of them would. uvicorn's workers accept from one shared
    socket, and a burst of connections mostly lands on whichever wakes first (splits of
    350/160 were seen): each connection is opened alone, its worker found from the
    sockets each one holds (/proc), and one landing on a worker that has its share is
    closed and opened again."""
    share = -(-count // len(pids))
    kept: dict[int, list[Connection]] = {pid: [] for pid in pids}
    sockets = {pid: _sockets(pid) for pid in pids}
    for _ in range(20 * count):
        if sum(len(c) for c in kept.values()) >= count:
            break
        (conn,) = await loadgen._open(port, 1, 30.0)
        now = {pid: _sockets(pid) for pid in pids}
        grew = [pid for pid in pids if now[pid] > sockets[pid]]
        owner = grew[0] if len(grew) == 1 else None
        if owner is not None and len(kept[owner]) >= share:
            conn.close()
            await asyncio.sleep(0.002)  # let the worker see the close before counting again
            now = {pid: _sockets(pid) for pid in pids}
        else:
            kept[owner if owner is not None else min(kept, key=lambda p: len(kept[p]))].append(conn)
        sockets = now
    # Interleaved, and used in turn by the pool: each worker gets every other request.
    mixed = [conn for round_ in itertools.zip_longest(*kept.values()) for conn in round_]
    return [conn for conn in mixed if conn is not None][:count]


class Pool:
    """Keep-alive connections shared by the fans, used in turn (first in, first out: a
    stack would keep reusing the few on top, all on one worker); the wait for one is
    measured apart."""

    def __init__(self, conns: list[Connection]) -> None:
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        for conn in conns:
            self.idle.put_nowait(conn)
        self.all = conns
        self.waits: defaultdict[str, list[float]] = defaultdict(list)

    async def send(self, recorder: Recorder, kind: str, data: bytes) -> Reply | None:
        asked = time.perf_counter()
        conn = await self.idle.get()
        self.waits[kind].append(time.perf_counter() - asked)
        try:
            return await recorder.send(conn, kind, data)
        finally:
            self.idle.put_nowait(conn)

    def close(self) -> None:
        for conn in self.all:
            conn.close()


@dataclass
class Sale:
    run: Run = field(default_factory=Run)
    seats: int = 0  # held by 201s
    sold_out_at: float | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    busy: Counter[int] = field(default_factory=Counter)  # 429/503 answers waited out
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, admitted)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (token, queue token)
    pool_waits: dict[str, list[float]] = field(default_factory=dict)  # by kind of request
    per_worker: list[int] = field(default_factory=list)  # the pool's connections
    lags: list[tuple[float, float]] = field(default_factory=list)  # the harness's own loop

    def took(self, seats: int, capacity: int) -> None:
        self.seats += seats
        if self.seats >= capacity and self.sold_out_at is None:
            self.sold_out_at = time.perf_counter()


class Fans:
    def __init__(self, ctx: Context, sizes: Sizes, event_id: int, tokens: list[str]) -> None:
        self.ctx, self.sizes, self.event_id, self.tokens = ctx, sizes, event_id, tokens
        self.sale = Sale()
        self.recorder = Recorder(self.sale.run)
        self.pool: Pool | None = None
        self.rng = random.Random(20261122)

    def _bytes(self, method: str, path: str, token: str, body: bytes = b"", **h: str) -> bytes:
        headers = [(k.replace("_", "-"), v) for k, v in h.items()]
        return request_bytes(method, path, self.ctx.port, body, token, headers=headers)

    async def send(self, kind: str, data: bytes) -> Reply | None:
        """One request, sent again after Retry-After on 429/503 (BUSY_TRIES sends)."""
        assert self.pool is not None
        for _ in range(BUSY_TRIES):
            reply = await self.pool.send(self.recorder, kind, data)
            if reply is None or reply.status not in (429, 503):
                return reply
            self.sale.busy[reply.status] += 1
            await asyncio.sleep(min(5.0, float(reply.retry_after or b"1")))
        return reply

    async def prepare(self) -> None:
        """Just before the first fan arrives."""

    async def run(self, fan: Callable[[int, str], Any]) -> Sale:
        pids = self.ctx.server.worker_pids()
        before = {pid: _sockets(pid) for pid in pids}
        conns = await _open_evenly(self.ctx.port, self.sizes.connections, pids)
        self.sale.per_worker = [_sockets(pid) - before[pid] for pid in pids]
        self.pool = Pool(conns)
        await self.prepare()
        run = self.sale.run
        cpu = time.process_time()
        run.started = time.perf_counter()
        tasks = [asyncio.ensure_future(fan(i, t)) for i, t in enumerate(self.tokens)]
        lagging = asyncio.ensure_future(self._lag())
        done, pending = await asyncio.wait(tasks, timeout=self.sizes.deadline_s)
        lagging.cancel()
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a bug in the harness is not a figure
        run.ended = time.perf_counter()
        run.cpu_seconds = time.process_time() - cpu
        if pending:
            self.sale.outcomes["cut short at the deadline"] += len(pending)
        self.sale.pool_waits = dict(self.pool.waits)
        self.pool.close()
        return self.sale

    async def _lag(self) -> None:
        """How late this process's own event loop runs (it inflates measured latencies)."""
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            late = time.perf_counter() - asked - LAG_PROBE_S
            if late > LAG_REPORTED_S:
                self.sale.lags.append((asked, late))

    async def arrive(self, i: int) -> None:
        at = self.sale.run.started + self.sizes.join_s * i / len(self.tokens)
        await asyncio.sleep(max(0.0, at - time.perf_counter()))

    async def buy(self, token: str, headers: dict[str, str]) -> None:
        """Hold 1-4 seats ("any N"), confirm; a 409 with none available means sold out."""
        quantity = self.rng.randint(1, 4)
        body = orjson.dumps({"event_id": self.event_id, "quantity": quantity})
        reply = await self.send("hold", self._bytes("POST", "/bookings/", token, body, **headers))
        if reply is None or reply.status != 201:
            if reply is not None and reply.status == 409 and b'"available":0' in reply.body:
                self.sale.took(self.sizes.seats, self.sizes.seats)  # seen sold out
            self.sale.outcomes[f"hold {reply.status if reply else 'failed'}"] += 1
            return
        self.sale.took(quantity, self.sizes.seats)
        booking = orjson.loads(reply.body)["id"]
        confirmed = await self.send(
            "confirm", self._bytes("POST", f"/bookings/{booking}/confirm", token, b"{}")
        )
        self.sale.outcomes[f"confirm {confirmed.status if confirmed else 'failed'}"] += 1


class Queued(Fans):
    organizer = ""
    opens = 0.0  # perf_counter() time of the sale's start

    async def prepare(self) -> None:
        """The organizer sets the sale's start (`PUT /admin/events/{id}`, as the README
        says) at 80 % of the arrivals: most fans are there before the advertised time and
        get drawn places, the last fifth line up after them."""
        ahead = self.sizes.join_s * OPENS_AT
        at = datetime.now(UTC) + timedelta(seconds=ahead)
        body = orjson.dumps({"sale_starts_at": at.isoformat()})
        path = f"/admin/events/{self.event_id}"
        assert self.pool is not None
        reply = await self.pool.send(
            self.recorder, "organizer", self._bytes("PUT", path, self.organizer, body)
        )
        if reply is None or reply.status != 200:
            raise BenchError(f"setting the sale's start failed: {reply}")
        self.opens = time.perf_counter() + ahead
        self.sale.run.samples.clear()  # the organizer's request is not a fan's

    async def fan(self, i: int, token: str) -> None:
        await self.arrive(i)
        path = f"/events/{self.event_id}/queue"
        reply = await self.send("join", self._bytes("POST", path, token))
        if reply is None or reply.status != 200:
            self.sale.outcomes[f"join {reply.status if reply else 'failed'}"] += 1
            return
        status = orjson.loads(reply.body)
        queue_token = status["queue_token"] or ""
        poll = self._bytes("GET", f"{path}/me", token, Queue_Token=queue_token)
        while status["state"] == "waiting" and self.sale.sold_out_at is None:
            await asyncio.sleep(status["poll_after_s"] * self.rng.uniform(0.8, 1.2))
            if self.sale.sold_out_at is not None:
                break
            reply = await self.send("poll", poll)
            if reply is None or reply.status != 200:
                self.sale.outcomes[f"poll {reply.status if reply else 'failed'}"] += 1
                return
            status = orjson.loads(reply.body)
        if status["state"] == "admitted" and self.sale.sold_out_at is None:
            await self.buy(token, {"Admission_Token": status["admission_token"]})
        elif status["state"] == "waiting":
            self.sale.outcomes["still waiting when it sold out"] += 1
            self.sale.waiting.append((token, queue_token))
        else:
            self.sale.outcomes[status["state"]] += 1

    async def watch(self, organizer: str, stop: asyncio.Event) -> None:
        """The organizer's stats every 0.25 s: how many were admitted, when."""
        conn = Connection(self.ctx.port, 30.0)
        data = request_bytes(
            "GET", f"/admin/events/{self.event_id}/queue", self.ctx.port, token=organizer
        )
        try:
            while not stop.is_set():
                reply = await conn.send(data)
                if reply.status == 200:
                    self.sale.samples.append((reply.ended, orjson.loads(reply.body)["admitted"]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            conn.close()


class Direct(Fans):
    async def fan(self, i: int, token: str) -> None:
        await self.arrive(i)
        await self.buy(token, {})


# -- the runs -------------------------------------------------------------------------


def _warm(ctx: Context, event_id: int) -> None:
    """A few customers join, poll, hold and confirm on a small queued event first: the
    first confirm of a process sets up Celery's producer, the first hold compiles, and a
    cold server's first second is not what is being measured."""
    tokens = [token for _, token in ctx.data.users[-WARM_FANS:]]

    async def one(i: int, conn: Connection, recorder: Recorder) -> None:
        join = request_bytes("POST", f"/events/{event_id}/queue", ctx.port, token=tokens[i])
        poll = request_bytes("GET", f"/events/{event_id}/queue/me", ctx.port, token=tokens[i])
        reply = await recorder.send(conn, "join", join)
        status: dict[str, Any] = {}
        while reply is not None and reply.status == 200:
            status = orjson.loads(reply.body)
            if status["state"] != "waiting":
                break
            await asyncio.sleep(0.05)
            reply = await recorder.send(conn, "poll", poll)
        if reply is None or reply.status != 200 or not status.get("admission_token"):
            raise BenchError(f"warming up: no admission ({reply})")
        body = orjson.dumps({"event_id": event_id, "quantity": 1})
        admitted = [("Admission-Token", status["admission_token"])]
        hold = request_bytes("POST", "/bookings/", ctx.port, body, tokens[i], headers=admitted)
        held = await recorder.send(conn, "hold", hold)
        if held is None or held.status != 201:
            raise BenchError(f"warming up: hold answered {held}")
        path = f"/bookings/{orjson.loads(held.body)['id']}/confirm"
        await recorder.send(
            conn, "confirm", request_bytes("POST", path, ctx.port, b"{}", tokens[i])
        )

    async def everyone() -> None:
        pids = ctx.server.worker_pids()
        conns = await _open_evenly(ctx.port, len(tokens), pids)  # every worker warmed up
        recorder = Recorder(Run())
        try:
            await asyncio.gather(*(one(i, c, recorder) for i, c in enumerate(conns)))
        finally:
            for conn in conns:
                conn.close()

    uvloop.run(everyone())


async def _queued_sale(fans: Queued, organizer: str) -> Sale:
    stop = asyncio.Event()
    watching = asyncio.ensure_future(fans.watch(organizer, stop))
    try:
        return await fans.run(fans.fan)
    finally:
        stop.set()
        await watching


def _poll_capacity(
    ctx: Context, sizes: Sizes, event_id: int, waiting: list[tuple[str, str]]
) -> Run:
    """A closed loop of polls by fans still in line, as fast as the server answers."""
    path = f"/events/{event_id}/queue/me"
    polls = [
        request_bytes("GET", path, ctx.port, token=t, headers=[("Queue-Token", q)])
        for t, q in waiting
    ]
    turn = iter(range(10**9))

    async def step(conn: Connection, recorder: Recorder) -> bool:
        await recorder.send(conn, "poll", polls[next(turn) % len(polls)])
        return True

    run: Run = uvloop.run(
        loadgen.closed_loop(ctx.port, sizes.capacity_connections, sizes.capacity_s, 30.0, step)
    )
    return run


def _figures(run: Run, kind: str, seconds: float | None = None) -> dict[str, Any]:
    samples = [s for s in run.samples if s.kind == kind]
    ms = percentiles([s.ended - s.started for s in samples if s.status])
    span = seconds if seconds is not None else run.seconds
    return {
        "requests": len(samples),
        "rate": round(len(samples) / span, 1) if span else 0.0,
        "p50": ms["p50"],
        "p99": ms["p99"],
        "max": ms["max"],
        "statuses": run.statuses(kind),
    }


def _by_phase(run: Run, kind: str, until: float) -> dict[str, Any]:
    """p50/p99 of `kind` while fans were still arriving (joins), and after."""
    out = {}
    for name, keep in (("while fans arrive", True), ("after", False)):
        ms = percentiles(
            [
                s.ended - s.started
                for s in run.samples
                if s.kind == kind and s.status and (s.started < until) == keep
            ]
        )
        out[name] = f"p50 {ms['p50']} ms, p99 {ms['p99']} ms"
    return out


def _slowest(run: Run, kind: str, since: float, count: int = 5) -> list[str]:
    """The slowest requests of `kind`: when they were sent (s after `since`) and took."""
    samples = sorted((s for s in run.samples if s.kind == kind), key=lambda s: -s.ms)
    return [f"at {s.started - since:.2f} s: {s.ms:.0f} ms" for s in samples[:count]]


def _admission_rate(sale: Sale, opens: float, target: int) -> dict[str, Any]:
    """Admissions per second while the line was long, from the organizer's stats."""
    after = [(t, n) for t, n in sale.samples if t >= opens + 0.5]
    end = sale.sold_out_at or sale.run.ended
    during = [(t, n) for t, n in after if t <= end]
    if len(during) < 2:
        return {"measured": None, "target": target, "accuracy": None}
    (t0, n0), (t1, n1) = during[0], during[-1]
    measured = (n1 - n0) / (t1 - t0)
    return {
        "measured": round(measured, 1),
        "target": target,
        "accuracy": round(measured / target, 3),
        "over s": round(t1 - t0, 2),
        "admitted in all": sale.samples[-1][1] if sale.samples else None,
    }


def _sold_out_s(sale: Sale, since: float) -> float | None:
    return round(sale.sold_out_at - since, 2) if sale.sold_out_at is not None else None


def waiting_room(ctx: Context) -> Result:
    sizes = QUICK if ctx.options.quick else FULL
    seeded: Seeded = asyncio.run(_seed(sizes))
    _warm_pools(ctx)
    _warm(ctx, seeded.warm)
    queued = Queued(ctx, sizes, seeded.queued, seeded.fans)
    queued.organizer = seeded.organizer
    with Measured(ctx, "waiting-room") as measured:
        sale: Sale = uvloop.run(_queued_sale(queued, seeded.organizer))
    capacity = _poll_capacity(ctx, sizes, seeded.queued, sale.waiting or [("", "")])
    direct = Direct(ctx, sizes, seeded.plain, seeded.fans)
    with Measured(ctx, "waiting-room-off") as measured_off:
        off: Sale = uvloop.run(direct.run(direct.fan))
    result = _result(ctx, sizes, Outcome(sale, queued.opens, capacity, off))
    result.details.update(measured.details)
    result.details["queue off: cpu"] = measured_off.details.get("cpu")
    _invariants(ctx, result, [seeded.queued, seeded.plain])
    return result


@dataclass
class Outcome:
    sale: Sale  # queue on
    opens: float
    capacity: Run  # closed-loop polls after the sale
    off: Sale  # queue off


def _result(ctx: Context, sizes: Sizes, out: Outcome) -> Result:
    sale, off = out.sale, out.off
    join = _figures(sale.run, "join")
    polls = _figures(sale.run, "poll")
    holds = _figures(sale.run, "hold")
    capacity = _figures(out.capacity, "poll")
    off_holds = _figures(off.run, "hold")
    rate = _admission_rate(sale, out.opens, sizes.rate)
    statuses = Counter(sale.run.statuses())  # the queue-off sale's are in the facts
    statuses.update(out.capacity.statuses())
    errors_off = sum(n for status, n in off.run.statuses().items() if status >= 500)
    facts = {
        "queue on: join": join,
        "queue on: join, wait for a pooled connection ms": percentiles(
            sale.pool_waits.get("join", [])
        ),
        "queue on: polls during the sale (paced by poll_after_s)": polls,
        "queue on: poll capacity (closed loop)": {
            **capacity,
            "connections": sizes.capacity_connections,
            "fans polled": len(sale.waiting),
        },
        "queue on: admission rate (organizer stats)": rate,
        "queue on: holds (admitted fans)": holds,
        "queue on: holds by phase": _by_phase(sale.run, "hold", sale.run.started + sizes.join_s),
        "queue on: slowest holds (since the sale's start)": _slowest(sale.run, "hold", out.opens),
        "queue on: polls by phase": _by_phase(sale.run, "poll", sale.run.started + sizes.join_s),
        "queue on: confirms": _figures(sale.run, "confirm"),
        "queue on: sold out after s (from the sale's start)": _sold_out_s(sale, out.opens),
        "queue on: fans": dict(sale.outcomes.most_common()),
        "connections per API worker": sale.per_worker,
        "harness loop late > 20 ms (s after the sale's start: ms)": [
            f"{at - out.opens:.2f}: {late * 1000:.0f}" for at, late in sale.lags[:10]
        ],
        "queue on: 429/503 waited out": dict(sale.busy),
        "queue off: holds": off_holds,
        "queue off: confirms": _figures(off.run, "confirm"),
        "queue off: sold out after s (from the first arrival)": _sold_out_s(off, off.run.started),
        "queue off: statuses (all requests)": off.run.statuses(),
        "queue off: 5xx": errors_off,
        "queue off: fans": dict(off.outcomes.most_common()),
        "queue off: 429/503 waited out": dict(off.busy),
        "generator CPU s": round(sale.run.cpu_seconds + off.run.cpu_seconds, 2),
    }
    result = Result(
        scenario="waiting-room",
        headline=(
            f"join p99 {join['p99']} ms, poll {capacity['rate']:,.0f} req/s, hold p99 "
            f"{holds['p99']} ms (queue off: {off_holds['p99']} ms)"
        ),
        throughput=capacity["rate"],
        unit="req/s",
        p50_ms=holds["p50"],
        p99_ms=holds["p99"],
        statuses=dict(sorted(statuses.items())),
        transport_errors=dict(sale.run.transport_errors + out.capacity.transport_errors),
        target=(
            f"queue on: join p99 <= {JOIN_P99_MS} ms, poll >= {POLL_RPS:,} req/s, admitted "
            f"holds p99 <= {HOLD_P99_MS} ms, 0 5xx; 0 oversell either way"
        ),
        details={"description": _description(sizes), "facts": facts},
    )
    _judge(result, ctx, _checks(join, capacity, holds))
    return result


def _checks(
    join: dict[str, Any], capacity: dict[str, Any], holds: dict[str, Any]
) -> list[tuple[bool, str]]:
    return [
        (join["p99"] is not None and join["p99"] <= JOIN_P99_MS, f"join p99 {join['p99']} ms"),
        (capacity["rate"] >= POLL_RPS, f"poll capacity {capacity['rate']:,.0f} req/s"),
        (holds["p99"] is not None and holds["p99"] <= HOLD_P99_MS, f"hold p99 {holds['p99']} ms"),
    ]


def _description(sizes: Sizes) -> str:
    return (
        f"{sizes.fans:,} fans (bulk-inserted, tokens minted by the harness) join the waiting "
        f"room of a {sizes.seats:,}-seat event within {sizes.join_s} s; the sale opens "
        f"at {OPENS_AT:.0%} of that, admit_per_second {sizes.rate} (arrivals: "
        f"{sizes.fans / sizes.join_s / sizes.rate:.0f}x that). They poll at the "
        "pace the answers ask; admitted fans hold 1-4 seats with their admission token and "
        "confirm. Then polls in a closed loop by the fans still in line (capacity). Then the "
        f"same fans hold at once on another {sizes.seats:,}-seat event without a queue. "
        f"Requests share {sizes.connections} keep-alive connections. Latency columns: the "
        "admitted fans' holds."
    )


RUNNERS: dict[str, Callable[[Context], Result]] = {"waiting-room": waiting_room}
