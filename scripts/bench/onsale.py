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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvloop

from scripts.bench import live, wrk
from scripts.bench.client import Connection, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.people import Buyers, FilesPeak, Probe, Sale, SaleSpec, log_in, percentiles
from scripts.bench.report import Result
from scripts.bench.scenarios import Context, Measured, _invariants, _judge, _warm_pools
from scripts.bench.seed import PASSWORD, customer_email

MAP_RPS = 4000
MAP_P99_MS = 50
MAP_LAG_S = 1.0
LIVE_LAG_MS = 100
GRACE_S = 1.5  # after the last buyer: the probe and subscribers may still see late changes
SUBSCRIBE_DEADLINE_S = 90.0  # subscribers not connected (snapshot received) by then give up
QUICK_SUBSCRIBE_DEADLINE_S = 20.0


@dataclass(frozen=True)
class Reads:
    """The map readers' figures."""

    tool: str
    connections: int
    requests: int
    seconds: float
    p50: float | None
    p99: float | None
    statuses: dict[int, int]
    transport: dict[str, int]
    retry_after: int  # 429/503 answers that carried Retry-After

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.rate:,.0f} req/s, p50 {self.p50} ms, p99 {self.p99} ms, {self.requests:,} "
            f"requests in {self.seconds:.2f} s ({self.tool}, {self.connections} connections)"
        )


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


@dataclass
class SaleRun:
    sale: Sale
    reads: Reads
    probe: Probe
    files: FilesPeak


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


# -- the figures ----------------------------------------------------------------------


def route(run: Run, kind: str, seconds: float) -> dict[str, Any]:
    samples = [s for s in run.samples if s.kind == kind]
    ms = percentiles([s.ended - s.started for s in samples if s.status])
    return {
        "requests": len(samples),
        "rate": len(samples) / seconds if seconds else 0.0,
        "p50": ms["p50"],
        "p99": ms["p99"],
        "statuses": run.statuses(kind),
    }


def route_line(figures: dict[str, Any]) -> str:
    return (
        f"{figures['requests']:,} ({figures['rate']:,.0f}/s), p50 {figures['p50']} ms, "
        f"p99 {figures['p99']} ms, {figures['statuses']}"
    )


def sold_out_after(sale: Sale, capacity: int) -> float | None:
    taken = 0
    for at, seats in sorted(sale.holds):
        taken += len(seats)
        if taken >= capacity:
            return at - sale.run.started
    return None


def live_lags(sale: Sale, subscribers: dict[str, Any]) -> dict[str, Any]:
    """Per hold (its first seat): 201 -> first subscriber, and -> every subscriber."""
    seen: live.Seen | None = subscribers.get("seen")
    connected = int(subscribers.get("connected", 0))
    if seen is None or not connected:
        return {
            "first": percentiles([]),
            "every": percentiles([]),
            "never": len(sale.holds),
            "never seats": [],
            "partial": 0,
        }
    first, every, never, partial = [], [], [], 0
    for at, seats in sale.holds:
        seat = seats[0] if seats else None
        if seat is None or seat not in seen.first:
            never.append(seat)
            continue
        first.append(max(0.0, seen.first[seat] - at))
        if seen.count[seat] >= connected:
            every.append(max(0.0, seen.last[seat] - at))
        else:
            partial += 1
    return {
        "first": percentiles(first),
        "every": percentiles(every),
        "never": len(never),
        "never seats": never[:5],
        "partial": partial,
    }


def channel_line(subscribers: dict[str, Any]) -> str:
    tally: live.Tally | None = subscribers.get("tally")
    parts = [
        f"{subscribers.get('connected', 0)} connected in {subscribers.get('connect_s')} s "
        f"(snapshot median {subscribers.get('snapshot_s_median')} s, "
        f"max {subscribers.get('snapshot_s_max')} s, seq {subscribers.get('snapshot_seq')})",
    ]
    if subscribers.get("failed"):
        parts.append(f"failed: {subscribers['failed']}")
    if subscribers.get("error"):
        parts.append(str(subscribers["error"]))
    if tally is not None:
        parts.append(
            f"{tally.messages:,} messages, {tally.gaps} missing numbers, {tally.repeats} "
            f"repeated, {tally.went_back} going back, {tally.resyncs} resync snapshots"
        )
        if tally.closed:
            parts.append(f"closed during the sale: {tally.closed}")
        for kind, examples in tally.examples.items():
            parts.append(f"{kind}, e.g. {', '.join(examples)}")
    return "; ".join(parts)


def merged_statuses(reads: Reads, runs: Sequence[Run]) -> dict[int, int]:
    total: Counter[int] = Counter(reads.statuses)
    for run in runs:
        total.update(run.statuses())
    return dict(sorted(total.items()))


def busy_with_retry_after(run: Run) -> int:
    return sum(1 for s in run.samples if s.status in (429, 503) and s.retry_after)


def server_errors_line(reads: Reads, runs: Sequence[Run]) -> str:
    """5xx, and how many of them were the overload answer (503 with Retry-After)."""
    statuses = merged_statuses(reads, runs)
    errors = sum(n for status, n in statuses.items() if status >= 500)
    busy = reads.retry_after + sum(busy_with_retry_after(run) for run in runs)
    overload = sum(n for status, n in statuses.items() if status == 503)
    return (
        f"{errors:,}, of them {overload:,} 503 ({busy:,} of the 429/503 answers carried "
        "Retry-After)"
    )


def merged_transport(reads: Reads, runs: Sequence[Run]) -> dict[str, int]:
    total: Counter[str] = Counter(reads.transport)
    for run in runs:
        total.update(run.transport_errors)
    return dict(total)


def sale_facts(run: SaleRun, subscribers: dict[str, Any], capacity: int) -> dict[str, Any]:
    """What a sale did, route by route, for the report."""
    sale, probe = run.sale, run.probe
    seconds = sale.run.seconds
    lags = live_lags(sale, subscribers)
    map_lag = percentiles(probe.lags)
    sold = sum(len(seats) for _, seats in sale.holds)
    out = sold_out_after(sale, capacity)
    return {
        "sale s": round(seconds, 2),
        "sold out after s": round(out, 3) if out is not None else f"not sold out ({sold} held)",
        "seats held": sold,
        "map readers": run.reads.line(),
        "buyers' map reads": route_line(route(sale.run, "map", seconds)),
        "holds (chosen seats)": route_line(route(sale.run, "hold", seconds)),
        "holds (any N)": route_line(route(sale.run, "hold-any", seconds)),
        "confirms": route_line(route(sale.run, "confirm", seconds)),
        "buyers": dict(sale.outcomes.most_common()),
        "holds won at attempt": dict(sorted(sale.tries.items())),
        "429/503 answers to buyers (each waited out and sent again, 3 sends at most)": {
            f"{status} {'with' if after else 'WITHOUT'} Retry-After": n
            for (status, after), n in sorted(sale.busy.items())
        },
        "map staleness ms (probe)": (
            f"{map_lag} over {len(probe.lags)} holds followed; {len(probe.watching)} not seen "
            f"within {GRACE_S} s; poll p50 {percentiles(probe.polls)['p50']} ms"
            + (f"; probe errors {dict(probe.errors)}" if probe.errors else "")
        ),
        "live staleness ms, first subscriber": lags["first"],
        "live staleness ms, every subscriber": (
            f"{lags['every']}; {lags['never']} holds never announced "
            f"(first seats {lags['never seats']}), {lags['partial']} not received by every "
            "subscriber"
        ),
        "live channel": channel_line(subscribers),
        "open files (peak)": (
            run.files.facts() + f", live subscribers' process {subscribers.get('open_files')}"
        ),
        "5xx": server_errors_line(run.reads, [sale.run]),
        "generator CPU s": round(sale.run.cpu_seconds, 2),
    }


def sale_checks(run: SaleRun, subscribers: dict[str, Any]) -> list[tuple[bool, str]]:
    """onsale's targets (stadium reports them without judging)."""
    reads, probe = run.reads, run.probe
    map_lag = percentiles(probe.lags)["max"]
    every = live_lags(run.sale, subscribers)
    live_p99 = every["every"]["p99"]
    return [
        (reads.rate >= MAP_RPS, f"map readers {reads.rate:,.0f} req/s < {MAP_RPS:,}"),
        (
            reads.p99 is not None and reads.p99 <= MAP_P99_MS,
            f"map readers' p99 {reads.p99} ms > {MAP_P99_MS} ms",
        ),
        (
            map_lag is not None and map_lag <= MAP_LAG_S * 1000 and not probe.watching,
            f"a hold took {map_lag} ms to show on the map (and {len(probe.watching)} not "
            f"within {GRACE_S} s)",
        ),
        (
            live_p99 is not None and live_p99 <= LIVE_LAG_MS and not every["never"],
            f"live channel p99 {live_p99} ms (every subscriber), {every['never']} holds "
            "never announced",
        ),
    ]


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
