"""waiting-room: a big on-sale behind the virtual waiting room, then the same sale without.

Queue on: FANS fans join `POST /events/{id}/queue` within JOIN_S seconds, before the sale
opens (at the end of that window; their places are drawn then), then
poll `GET /events/{id}/queue/me` at the pace the answers ask (`poll_after_s`, +-20 %);
an admitted fan holds 1-4 seats ("any N") with the `Admission-Token` and confirms. The
organizer's stats are sampled meanwhile (the admission rate). The rate is what an
organizer would set on this machine: about a third of what its booking path takes in
holds plus confirms (docs/PERFORMANCE.md, confirm-flow), so admitted fans are served at
once while the rest wait. Once sold out, the poll capacity is measured on its own: a
closed loop of polls by fans still in line (wrk, scripts/bench/waiting_room.lua).
Queue off: the same fans arrive as fast at another event of the same size and hold at
once. Fans are bulk-inserted with one password hash and tokens minted by the harness
(the server's SECRET_KEY), like the other scenarios' customers; their requests share a
pool of keep-alive connections (the machine's open-files limit is below 2 x FANS).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import insert

from scripts.bench import loadgen, wrk
from scripts.bench.client import Connection, request_bytes
from scripts.bench.fans import OPENS_AT, Direct, Queued, Sale, Sizes, queued_sale, warm
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.people import percentiles
from scripts.bench.report import Result
from scripts.bench.scenarios import (
    Context,
    Measured,
    _invariants,
    _judge,
    _warm_pools,
)
from scripts.bench.seed import PASSWORD, TOKEN_MINUTES, seated

LUA = Path(__file__).with_name("waiting_room.lua")
JOIN_P99_MS = 50
POLL_RPS = 5000
HOLD_P99_MS = 100
WARM_SEATS = 100


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


def _poll_capacity(
    ctx: Context, sizes: Sizes, event_id: int, waiting: list[tuple[str, str]]
) -> dict[str, Any]:
    """Polls by the fans still in line, one after another, as fast as the server answers
    on `capacity_connections` connections: with wrk (waiting_room.lua) when installed,
    else the built-in generator (which costs more CPU, so the figure is lower)."""
    path = f"/events/{event_id}/queue/me"
    if ctx.wrk:
        listed = ctx.run_dir / "waiting-room-polls.tsv"
        listed.write_text("".join(f"{t}\t{q}\t{path}\n" for t, q in waiting))
        args = wrk.command(
            ctx.wrk,
            ctx.url(path),
            connections=sizes.capacity_connections,
            threads=ctx.options.wrk_threads,
            seconds=sizes.capacity_s,
            mode="polls",
            requests_file=listed,
        )
        args[args.index("-s") + 1] = str(LUA)
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        out = wrk._result(args, done.returncode, done.stdout, done.stderr, ctx.run_dir / "wrk.log")
        return {
            "requests": out.requests,
            "rate": round(out.rate, 1),
            "p50": out.latency_ms["p50"],
            "p99": out.latency_ms["p99"],
            "max": out.latency_ms["max"],
            "statuses": out.statuses,
            "tool": "wrk",
        }
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
    return {**_figures(run, "poll"), "tool": "python (uvloop)"}


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
    warm(ctx, seeded.warm)
    queued = Queued(ctx, sizes, seeded.queued, seeded.fans)
    queued.organizer = seeded.organizer
    with Measured(ctx, "waiting-room") as measured:
        sale: Sale = uvloop.run(queued_sale(queued, seeded.organizer))
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
    capacity: dict[str, Any]  # closed-loop polls after the sale
    off: Sale  # queue off


def _result(ctx: Context, sizes: Sizes, out: Outcome) -> Result:
    sale, off = out.sale, out.off
    join = _figures(sale.run, "join")
    polls = _figures(sale.run, "poll")
    holds = _figures(sale.run, "hold")
    capacity = out.capacity
    off_holds = _figures(off.run, "hold")
    rate = _admission_rate(sale, out.opens, sizes.rate)
    statuses = Counter(sale.run.statuses())  # the queue-off sale's are in the facts
    statuses.update({int(k): n for k, n in capacity["statuses"].items()})
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
        "queue on: slowest joins (since the first arrival)": _slowest(
            sale.run, "join", sale.run.started
        ),
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
        transport_errors=dict(sale.run.transport_errors),
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
        f"room of a {sizes.seats:,}-seat event within {sizes.join_s} s, before the sale "
        f"opens (at {OPENS_AT:.0%} of that); admit_per_second {sizes.rate} (arrivals: "
        f"{sizes.fans / sizes.join_s / sizes.rate:.0f}x that). They poll at the "
        "pace the answers ask; admitted fans hold 1-4 seats with their admission token and "
        "confirm. Then polls in a closed loop by the fans still in line (capacity). Then the "
        f"same fans hold at once on another {sizes.seats:,}-seat event without a queue. "
        f"Requests share {sizes.connections} keep-alive connections. Latency columns: the "
        "admitted fans' holds."
    )


RUNNERS: dict[str, Callable[[Context], Result]] = {"waiting-room": waiting_room}
