"""onsale: a realistic on-sale of one event, through the HTTP and WebSocket paths customers use.

Map readers (wrk, or the asyncio generator) read the seat map for exactly as long as the
sale lasts, live subscribers follow the event's channel (scripts/bench/live.py), and
buyers who logged in for real read the map, hold, retry on 409, then pay or leave
(scripts/bench/people.py). A probe polls the map meanwhile: how long after a hold's 201
the public map stops offering those seats; the subscribers say how long the live channel
took. The sale engine here is shared with `stadium` (scripts/bench/stadium.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import uvloop

from scripts.bench import live, wrk
from scripts.bench.client import Connection, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.people import Buyers, FilesPeak, Probe, SaleSpec, log_in, percentiles
from scripts.bench.report import Result
from scripts.bench.salefacts import (
    GRACE_S,
    LIVE_LAG_MS,
    MAP_LAG_S,
    MAP_P99_MS,
    MAP_RPS,
    Reads,
    SaleRun,
    busy_with_retry_after,
    merged_statuses,
    merged_transport,
    sale_checks,
    sale_facts,
)
from scripts.bench.scenarios import Context, Measured, _invariants, _judge, _warm_pools
from scripts.bench.seed import PASSWORD, customer_email

SUBSCRIBE_DEADLINE_S = 90.0  # subscribers not connected (snapshot received) by then give up
QUICK_SUBSCRIBE_DEADLINE_S = 20.0


async def read_map(ctx: Context, path: str, stop: asyncio.Event, bound_s: float) -> Reads:
    """GET `path` on read_connections connections from now until `stop` (at most `bound_s`)."""
    if ctx.wrk:
        return await _wrk_reads(ctx, path, stop, bound_s)
    return await _python_reads(ctx, path, stop, bound_s)


async def _wrk_reads(ctx: Context, path: str, stop: asyncio.Event, bound_s: float) -> Reads:
    assert ctx.wrk is not None
    connections = ctx.sizes.read_connections
    readers = wrk.Until(
        ctx.wrk,
        ctx.url(path),
        connections=connections,
        threads=ctx.options.wrk_threads,
        seconds=bound_s,
    )
    try:  # wrk ends by itself after `bound_s`
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), bound_s)
    finally:
        out = await asyncio.to_thread(readers.stop, ctx.run_dir / "wrk.log")
    return Reads(
        "wrk",
        connections,
        out.requests,
        out.seconds,
        out.latency_ms["p50"],
        out.latency_ms["p99"],
        out.statuses,
        out.transport_errors,
        out.retry_after,
    )


async def _python_reads(ctx: Context, path: str, stop: asyncio.Event, bound_s: float) -> Reads:
    run = Run()
    recorder = Recorder(run)
    data = request_bytes("GET", path, ctx.port)
    deadline = time.perf_counter() + bound_s

    async def loop() -> None:
        conn = Connection(ctx.port, ctx.sizes.client_timeout_s)
        try:
            while not stop.is_set() and time.perf_counter() < deadline:
                await recorder.send(conn, "map", data)
        finally:
            conn.close()

    run.started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(ctx.sizes.read_connections)))
    run.ended = time.perf_counter()
    ms = percentiles([s.ended - s.started for s in run.samples if s.status])
    return Reads(
        "python (uvloop)",
        ctx.sizes.read_connections,
        len(run.samples),
        run.seconds,
        ms["p50"],
        ms["p99"],
        run.statuses(),
        dict(run.transport_errors),
        busy_with_retry_after(run),
    )


# -- one sale -------------------------------------------------------------------------


async def _sale(ctx: Context, spec: SaleSpec) -> SaleRun:
    stop = asyncio.Event()
    probe = Probe(ctx.port, spec.event_id, ctx.sizes.client_timeout_s)
    files = FilesPeak(ctx.server.worker_pids())
    path = f"/events/{spec.event_id}/seats"
    reading = asyncio.ensure_future(read_map(ctx, path, stop, spec.deadline_s + 5))
    probing = asyncio.ensure_future(probe.run(stop, GRACE_S))
    sampling = asyncio.ensure_future(files.run(stop))
    try:
        sale = await Buyers(spec, probe).run()
    finally:
        stop.set()
    reads = await reading
    await asyncio.gather(probing, sampling)
    await asyncio.sleep(max(0.0, GRACE_S - (time.perf_counter() - sale.run.ended)))
    return SaleRun(sale, reads, probe, files)


def buyers_tokens(ctx: Context, first: int, count: int) -> tuple[list[str], float]:
    """Tokens of customers first..first+count-1 from real `POST /auth/login`s; seconds taken."""
    if first + count > len(ctx.data.users):
        raise BenchError(f"{first + count} customers needed, {len(ctx.data.users)} seeded")
    emails = [customer_email(i) for i in range(first, first + count)]
    started = time.perf_counter()
    tokens: list[str] = uvloop.run(log_in(ctx.port, emails, PASSWORD, ctx.sizes.client_timeout_s))
    return tokens, time.perf_counter() - started


def warm_map(ctx: Context, event_id: int) -> None:
    with urllib.request.urlopen(ctx.url(f"/events/{event_id}/seats"), timeout=60) as response:
        response.read()


def subscribe_deadline(ctx: Context) -> float:
    return QUICK_SUBSCRIBE_DEADLINE_S if ctx.options.quick else SUBSCRIBE_DEADLINE_S


def run_sale(
    ctx: Context, name: str, spec: SaleSpec, before: Callable[[], None] | None = None
) -> tuple[SaleRun, dict[str, Any], dict[str, Any]]:
    """(the sale, the subscribers' facts, the measured details) with subscribers connected."""
    url = f"ws://127.0.0.1:{ctx.port}/events/{spec.event_id}/live"
    with live.subscribers(url, ctx.sizes.subscribers, subscribe_deadline(ctx)) as subs:
        ready = subs.start()
        if before is not None:
            before()
        with Measured(ctx, name) as measured:
            figures: SaleRun = uvloop.run(_sale(ctx, spec))
            done = subs.stop()
    _subscribers_cpu(measured.details, subs.cpu_seconds())
    return figures, {**ready, **done}, measured.details


def _subscribers_cpu(details: dict[str, Any], seconds: float) -> None:
    """Move the subscribers' process from "other processes" to a line of its own."""
    cpu = details.get("cpu", {})
    wall, cores = cpu.get("seconds"), cpu.get("cores")
    if not wall or cores is None or seconds <= 0:
        return
    share = seconds / wall
    cores["other processes"] = round(max(0.0, cores.get("other processes", 0.0) - share), 2)
    cores["live subscribers (harness process)"] = round(share, 2)
    cpu["cores"] = dict(sorted(cores.items(), key=lambda kv: -kv[1]))


# -- the scenario -----------------------------------------------------------------------


def onsale(ctx: Context) -> Result:
    data, sizes = ctx.data, ctx.sizes
    assert data.onsale_event is not None
    event = data.onsale_event
    tokens, login_s = buyers_tokens(ctx, 0, sizes.buyers)
    spec = SaleSpec(
        port=ctx.port,
        event_id=event,
        tokens=tokens,
        arrival_s=sizes.arrival_s,
        deadline_s=sizes.sale_deadline_s,
        timeout_s=sizes.client_timeout_s,
    )
    _warm_pools(ctx)
    run, subscribers, details = run_sale(ctx, "onsale", spec, lambda: warm_map(ctx, event))
    facts = sale_facts(run, subscribers, sizes.onsale_seats)
    facts["buyers' logins before the sale"] = f"{len(tokens)} in {login_s:.1f} s"
    result = _result(ctx, run, facts, details)
    _invariants(ctx, result, [event])
    _judge(result, ctx, sale_checks(run, subscribers))
    return result


def _result(ctx: Context, run: SaleRun, facts: dict[str, Any], details: dict[str, Any]) -> Result:
    sizes, reads = ctx.sizes, run.reads
    out = facts["sold out after s"]
    sold = f"sold out in {out} s" if isinstance(out, float) else str(out)
    return Result(
        scenario="onsale",
        headline=f"{sold}; map {reads.rate:,.0f} req/s",
        throughput=round(reads.rate, 1),
        unit="req/s",
        p50_ms=reads.p50,
        p99_ms=reads.p99,
        statuses=merged_statuses(reads, [run.sale.run]),
        transport_errors=merged_transport(reads, [run.sale.run]),
        target=(
            f"map >= {MAP_RPS:,} req/s, p99 <= {MAP_P99_MS} ms; hold on the map <= "
            f"{MAP_LAG_S:.0f} s, on the live channel <= {LIVE_LAG_MS} ms (p99); 0 5xx"
        ),
        details={
            **details,
            "description": (
                f"A {sizes.onsale_seats}-seat event goes on sale: {sizes.buyers:,} buyers "
                f"(logged in with POST /auth/login beforehand) arrive within "
                f"{sizes.arrival_s} s; each reads the map, holds 1-4 free seats next to each "
                f"other, re-reads and picks others on 409 (up to 4 holds), then confirms "
                f"(70 %) or leaves (30 %). Meanwhile map readers GET the map and "
                f"{sizes.subscribers} WebSocket subscribers follow /events/{{id}}/live. Latency "
                "columns: the map readers. Staleness: a probe polling the map, and the "
                "subscribers, against each hold's 201 as the buyer got it."
            ),
            "facts": facts,
            "generator": {
                "tool": f"{reads.tool} (readers) + python (uvloop, buyers and probe)",
                "buyers": sizes.buyers,
                "subscribers": sizes.subscribers,
            },
        },
    )


RUNNERS: dict[str, Callable[[Context], Result]] = {"onsale": onsale}
