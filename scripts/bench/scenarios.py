"""The scenarios: what each one sends, what it measures, and which target it is held to."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from scripts.bench import invariants, loadgen, monitor, wrk
from scripts.bench.client import Connection, Reply, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.options import Options, Sizes
from scripts.bench.profile import Profiler
from scripts.bench.report import Result
from scripts.bench.seed import Dataset, hold_requests
from scripts.bench.server import Server

# Targets (2-core machine, load generator on the same machine).
READ_CACHED_RPS = 8000
READ_CACHED_P99_MS = 20
CACHE_RATIO = 30
HOT_SELLOUT_S = 1.0
HOT_P99_MS = 1000
SPREAD_HOLDS_PER_S = 1000
SPREAD_P99_MS = 50
WARM_POOL_SECONDS = 1.0
STATS_DELAY_S = 1.0  # a backend sends its table counters at most once a second


@dataclass
class Context:
    options: Options
    data: Dataset
    server: Server
    wrk: str | None
    run_dir: Path
    dsn: str  # asyncpg DSN of the benchmark database
    database: str  # its name
    statements: bool  # pg_stat_statements is loaded
    py_spy: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> Sizes:
        return self.options.sizes

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"


# -- measuring around a scenario ------------------------------------------------------


class Measured:
    """CPU by process group, PostgreSQL sessions, statements and py-spy, for one run.

    With `tables`, also what each table saw (sequential scans and the rows they read,
    inserts, updates); backends report those with a delay, so the pools are exercised
    for a moment after the run to make every backend send them.
    """

    def __init__(self, ctx: Context, name: str, tables: bool = False) -> None:
        self.ctx = ctx
        self.name = name
        self.tables = tables
        self.details: dict[str, Any] = {}
        self._tables: dict[str, tuple[int, ...]] = {}
        self._log_at = 0
        self._sampler = monitor.SessionSampler(ctx.dsn, ctx.database)
        self._profiler: Profiler | None = None
        self._cpu: monitor.CpuSnapshot | None = None

    def __enter__(self) -> Measured:
        self._log_at = self.ctx.server.log_size()
        if self.tables:
            self._tables = asyncio.run(monitor.table_stats(self.ctx.dsn))
        if self.ctx.statements:
            asyncio.run(monitor.reset_statements(self.ctx.dsn))
        if self.ctx.py_spy is not None and self.ctx.server.process is not None:
            output = self.ctx.run_dir / f"py-spy-{self.name}.txt"
            self._profiler = Profiler(self.ctx.py_spy, self.ctx.server.process.pid, output)
            self._profiler.start()
        self._sampler.__enter__()
        self._cpu = monitor.cpu_snapshot(self.ctx.server.pids(), self.ctx.database)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._cpu is not None
        self.details["cpu"] = monitor.cpu_usage(
            self._cpu, monitor.cpu_snapshot(self.ctx.server.pids(), self.ctx.database)
        )
        self._sampler.__exit__()
        seconds = self.details["cpu"].get("seconds", 0.0)
        self.details["sessions"] = self._sampler.sessions.summary(seconds)
        if self._sampler.error:
            self.details["sessions"]["error"] = self._sampler.error
        if self._profiler is not None:
            self.details["profile"] = self._profiler.stop()
        if self.ctx.statements and exc[0] is None:
            self.details["statements"] = asyncio.run(
                monitor.top_statements(self.ctx.dsn, self.ctx.database)
            )
        if self.tables and exc[0] is None:
            time.sleep(STATS_DELAY_S)
            _warm_pools(self.ctx)  # every pooled backend ends a transaction: stats sent
            after = asyncio.run(monitor.table_stats(self.ctx.dsn))
            self.details["tables"] = monitor.table_deltas(self._tables, after)
        self.details["server_log"] = self.ctx.server.log_events(self._log_at)


def _percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank], 2)


def _python_latency(run: Run, kind: str | None = None) -> tuple[float | None, float | None]:
    ms = [s.ms for s in run.samples if s.status and (kind is None or s.kind == kind)]
    return _percentile(ms, 50), _percentile(ms, 99)


def _generator(ctx: Context) -> str:
    return "wrk" if ctx.wrk else "python"


def _no_5xx(result: Result) -> None:
    if result.server_errors:
        result.misses.append(f"{result.server_errors} responses were 5xx")
    if result.transport_errors:
        result.misses.append(f"transport errors: {result.transport_errors}")


def _judge(result: Result, ctx: Context, checks: list[tuple[bool, str]]) -> None:
    """Apply the targets (full runs only); a failed check adds its sentence to `misses`."""
    _no_5xx(result)
    if ctx.options.quick:
        result.met = None if not result.misses else False
        return
    result.misses += [sentence for ok, sentence in checks if not ok]
    result.met = not result.misses


def _cpu_line(details: dict[str, Any]) -> str:
    cores = details.get("cpu", {}).get("cores", {})
    return ", ".join(f"{k} {v}" for k, v in list(cores.items())[:4])


# -- GET scenarios --------------------------------------------------------------------


def _uvloop_run(coro: Any) -> Any:
    return uvloop.run(coro)


def _closed_loop_get(ctx: Context, path: str, seconds: float) -> Run:
    step = loadgen.get_step(ctx.port, path)
    run: Run = _uvloop_run(
        loadgen.closed_loop(
            ctx.port, ctx.sizes.read_connections, seconds, ctx.sizes.client_timeout_s, step
        )
    )
    return run


def _warm_up(ctx: Context, path: str) -> str:
    """GET `path` for the warm-up time (fills the cache); the X-Cache header after it."""
    sizes = ctx.sizes
    if ctx.wrk:
        wrk.run(
            ctx.wrk,
            ctx.url(path),
            connections=sizes.read_connections,
            threads=ctx.options.wrk_threads,
            seconds=sizes.read_warmup_seconds,
            log=ctx.run_dir / "wrk.log",
        )
    else:
        _closed_loop_get(ctx, path, sizes.read_warmup_seconds)
    return _cache_header(ctx.url(path))


def _read(ctx: Context, path: str, cache: str) -> dict[str, Any]:
    """Measure GET `path`: rate, latency, statuses."""
    sizes = ctx.sizes
    log = ctx.run_dir / "wrk.log"
    if ctx.wrk:
        result = wrk.run(
            ctx.wrk,
            ctx.url(path),
            connections=sizes.read_connections,
            threads=ctx.options.wrk_threads,
            seconds=sizes.read_seconds,
            log=log,
        )
        return {
            "rate": result.rate,
            "p50": result.latency_ms["p50"],
            "p99": result.latency_ms["p99"],
            "statuses": result.statuses,
            "transport": result.transport_errors,
            "facts": {
                "requests": result.requests,
                "seconds": round(result.seconds, 2),
                "p90 ms": result.latency_ms["p90"],
                "max ms": result.latency_ms["max"],
                "MB/s received": round(result.raw["bytes"] / result.seconds / 1e6, 1),
                "X-Cache after warm-up": cache,
                "served from the cache": _share(result.cache_hits, result.requests),
            },
        }
    run = _closed_loop_get(ctx, path, sizes.read_seconds)
    p50, p99 = _python_latency(run)
    return {
        "rate": len(run.samples) / run.seconds,
        "p50": p50,
        "p99": p99,
        "statuses": run.statuses(),
        "transport": dict(run.transport_errors),
        "facts": {
            "requests": len(run.samples),
            "seconds": round(run.seconds, 2),
            "X-Cache after warm-up": cache,
            "served from the cache": _share(
                sum(s.cache_hit for s in run.samples), len(run.samples)
            ),
            "generator CPU s": round(run.cpu_seconds, 2),
        },
    }


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _cache_header(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.headers.get("X-Cache") or "none")


def _get_result(ctx: Context, name: str, path: str, target: str) -> tuple[Result, dict[str, Any]]:
    cache = _warm_up(ctx, path)
    with Measured(ctx, name) as measured:
        figures = _read(ctx, path, cache)
    result = Result(
        scenario=name,
        headline=f"{figures['rate']:,.0f} req/s",
        throughput=round(figures["rate"], 1),
        unit="req/s",
        p50_ms=figures["p50"],
        p99_ms=figures["p99"],
        statuses=figures["statuses"],
        transport_errors=figures["transport"],
        target=target,
        details={
            **measured.details,
            "facts": figures["facts"],
            "generator": {"tool": _generator(ctx), "connections": ctx.sizes.read_connections},
        },
    )
    non_2xx = sum(n for s, n in result.statuses.items() if not 200 <= s < 300)
    if non_2xx:
        result.misses.append(f"{non_2xx} responses were not 2xx")
    return result, figures


def read_cached(ctx: Context) -> Result:
    assert ctx.data.read_event is not None
    path = f"/events/{ctx.data.read_event}/seats"
    result, figures = _get_result(
        ctx, "read-cached", path, f">= {READ_CACHED_RPS:,} req/s, p99 <= {READ_CACHED_P99_MS} ms"
    )
    result.details["description"] = (
        f"GET {path} ({ctx.sizes.read_event_seats}-seat map), "
        f"{ctx.sizes.read_connections} connections, {ctx.sizes.read_seconds} s, cache warm."
    )
    if figures["facts"].get("X-Cache after warm-up") != "hit":
        result.problems.append("the seat map was not served from the cache after the warm-up")
    served = figures["facts"].get("served from the cache", "-")
    if served not in ("100.0%", "-"):
        result.misses.append(
            f"only {served} of the responses came from the cache (did the Redis guard's "
            "breaker open? see the API log line)"
        )
    _judge(
        result,
        ctx,
        [
            (
                figures["rate"] >= READ_CACHED_RPS,
                f"{figures['rate']:,.0f} req/s < {READ_CACHED_RPS:,}",
            ),
            (
                figures["p99"] is not None and figures["p99"] <= READ_CACHED_P99_MS,
                f"p99 {figures['p99']} ms > {READ_CACHED_P99_MS} ms",
            ),
        ],
    )
    return result


def read_uncached(ctx: Context) -> Result:
    assert ctx.data.read_event is not None
    path = f"/events/{ctx.data.read_event}/seats"
    result, _ = _get_result(ctx, "read-uncached", path, "0 5xx (ratio: see cached/uncached)")
    result.details["description"] = (
        f"GET {path} with CACHE_ENABLED=false (its own server start): every request reads "
        "PostgreSQL and serialises the seat map."
    )
    _judge(result, ctx, [])
    return result


def events_list(ctx: Context) -> Result:
    result, _ = _get_result(ctx, "events-list", "/events/", "0 5xx")
    result.details["description"] = (
        f"GET /events/ (first page of the published events), {ctx.sizes.read_connections} "
        f"connections, {ctx.sizes.read_seconds} s, cache warm."
    )
    _judge(result, ctx, [])
    return result


# -- booking scenarios ----------------------------------------------------------------


def _warm_pools(ctx: Context) -> None:
    """Authenticated DB reads, so every worker's connection pool is open before a burst."""
    token = ctx.data.users[-1][1]
    data = request_bytes("GET", "/bookings/my-bookings", ctx.port, token=token)

    async def step(conn: Connection, recorder: Recorder) -> bool:
        await recorder.send(conn, "warm", data)
        return True

    _uvloop_run(
        loadgen.closed_loop(
            ctx.port,
            4 * ctx.options.workers * (ctx.options.pool_size + ctx.options.max_overflow),
            WARM_POOL_SECONDS,
            ctx.sizes.client_timeout_s,
            step,
        )
    )


def _sockets(pid: int) -> int:
    try:
        return sum(
            1
            for fd in Path(f"/proc/{pid}/fd").iterdir()
            if fd.readlink().name.startswith("socket:")
        )
    except OSError:
        return -1


async def _check(ctx: Context, events: Sequence[int]) -> tuple[list[str], list[invariants.Taken]]:
    return await invariants.check(ctx.dsn, events)


def _invariants(ctx: Context, result: Result, events: Sequence[int]) -> list[invariants.Taken]:
    violations, counts = asyncio.run(_check(ctx, events))
    result.problems += violations
    result.details.setdefault("facts", {})["invariants"] = (
        "ok" if not violations else f"{len(violations)} VIOLATED"
    )
    return counts


def _db_per_success(details: dict[str, Any], successes: int) -> None:
    """Database time per successful request, from the session samples (and statements)."""
    if successes <= 0:
        return
    sessions = details.get("sessions", {})
    seconds = details.get("cpu", {}).get("seconds", 0.0)
    mean = sessions.get("mean_backends", {})
    per = {}
    for state, count in mean.items():
        if state != "idle":  # pooled connections nobody is using
            per[state] = f"{count * seconds / successes * 1000:.2f} ms"
    statements = details.get("statements", {})
    if statements.get("total_exec_ms"):
        per["statement execution (pg_stat_statements)"] = (
            f"{statements['total_exec_ms'] / successes:.2f} ms in "
            f"{statements['calls'] / successes:.1f} statements"
        )
    for table, counts in details.get("tables", {}).items():
        if counts["seq_scan"]:
            per[f"sequential scans of {table}"] = (
                f"{counts['seq_scan'] / successes:.2f}, reading "
                f"{counts['seq_tup_read'] / successes:,.0f} rows"
            )
    details["db_per_success"] = per


RUSH_SENDS = 3


async def _send_until_served(
    recorder: Recorder, conn: Connection, kind: str, data: bytes
) -> Reply | None:
    """Send; on 429/503 wait out Retry-After and send again (RUSH_SENDS sends at most)."""
    reply = None
    for _ in range(RUSH_SENDS):
        reply = await recorder.send(conn, kind, data)
        if reply is None or reply.status not in (429, 503) or reply.retry_after is None:
            return reply
        await asyncio.sleep(float(reply.retry_after or b"1"))
    return reply


def _rush(
    ctx: Context,
    name: str,
    event_id: int,
    capacity: int,
    clients: int,
    first: Callable[[int], bytes],
    fallback: Callable[[int], bytes] | None,
) -> tuple[Run, Result, dict[str, int]]:
    """`clients` clients at once, each one request (and one fallback on 409). A 429 or
    503 is waited out (its Retry-After) and sent again, at most RUSH_SENDS times in all,
    as a well-behaved client does."""
    _warm_pools(ctx)
    split: dict[int, int] = {}
    baseline = {pid: _sockets(pid) for pid in ctx.server.worker_pids()}

    async def behaviour(i: int, conn: Connection, recorder: Recorder) -> None:
        if not split:
            split.update({pid: _sockets(pid) - n for pid, n in baseline.items()})
        reply = await _send_until_served(recorder, conn, "first", first(i))
        if fallback is not None and reply is not None and reply.status == 409:
            await _send_until_served(recorder, conn, "fallback", fallback(i))

    with Measured(ctx, name, tables=True) as measured:
        run: Run = _uvloop_run(
            loadgen.clients(ctx.port, clients, ctx.sizes.client_timeout_s, behaviour)
        )
    wins = sorted(s.ended for s in run.samples if s.status == 201)
    sellout = wins[capacity - 1] - run.started if len(wins) >= capacity else None
    p50, p99 = _python_latency(run)
    sold = len(wins)
    headline = f"{sold:,} sold in {sellout:.2f} s" if sellout is not None else f"only {sold:,} sold"
    result = Result(
        scenario=name,
        headline=headline,
        throughput=round(len(run.samples) / run.seconds, 1) if run.seconds else None,
        unit="req/s",
        p50_ms=p50,
        p99_ms=p99,
        statuses=run.statuses(),
        transport_errors=dict(run.transport_errors),
        target="",
        details={
            **measured.details,
            "facts": {
                "sold (201s)": sold,
                "sell-out s": round(sellout, 3) if sellout is not None else None,
                "all answered s": round(run.seconds, 3),
                "requests": len(run.samples),
                "req/s": round(len(run.samples) / run.seconds) if run.seconds else None,
                "first request": run.statuses("first"),
                "fallback": run.statuses("fallback"),
                "409 codes": dict(
                    sorted(
                        {
                            c: sum(1 for s in run.samples if s.code == c)
                            for c in {s.code for s in run.samples if s.code}
                        }.items()
                    )
                ),
            },
            "generator": {
                "tool": "python (uvloop)",
                "clients": clients,
                "CPU s": round(run.cpu_seconds, 2),
                "connections per worker": list(split.values()),
            },
        },
    )
    counts = _invariants(ctx, result, [event_id])
    taken = counts[0].taken if counts else -1
    result.details["facts"]["taken in the database"] = taken
    if sold > capacity or taken > capacity:
        result.problems.append(f"{max(sold, taken)} seats sold on a {capacity}-seat event")
    _db_per_success(result.details, sold)
    return run, result, {"sold": sold, "taken": taken}


def hot_event(ctx: Context) -> Result:
    data, sizes = ctx.data, ctx.sizes
    assert data.hot_event is not None
    event, seats = data.hot_event, data.hot_seats
    rng = random.Random(20261121)
    users = data.users[: sizes.hot_clients]
    if len(users) < sizes.hot_clients:
        raise BenchError("not enough users were seeded for hot-event")
    chosen = [rng.choice(seats) for _ in users]
    first = [
        request_bytes(
            "POST",
            "/bookings/",
            ctx.port,
            f'{{"event_id": {event}, "seat_ids": [{s}]}}'.encode(),
            t,
        )
        for (_, t), s in zip(users, chosen, strict=True)
    ]
    anyone = [
        request_bytes(
            "POST", "/bookings/", ctx.port, f'{{"event_id": {event}, "quantity": 1}}'.encode(), t
        )
        for _, t in users
    ]
    run, result, counts = _rush(
        ctx, "hot-event", event, len(seats), len(users), first.__getitem__, anyone.__getitem__
    )
    n = len(seats)
    result.target = f"{n} sold in <= {HOT_SELLOUT_S:.1f} s, exactly {n}, p99 <= {HOT_P99_MS} ms"
    result.details["description"] = (
        f"{len(users):,} clients at once on a {n}-seat event: each holds one seat of its "
        'choosing (random, collisions allowed), then `{"quantity": 1}` on 409.'
    )
    sellout = result.details["facts"]["sell-out s"]
    exact = counts["sold"] == n and counts["taken"] == n
    if not exact:
        result.misses.append(
            f"sold {counts['sold']} (database: {counts['taken']}), not exactly {n}"
        )
    _judge(
        result,
        ctx,
        [
            (sellout is not None and sellout <= HOT_SELLOUT_S, f"sell-out took {sellout} s"),
            (
                result.p99_ms is not None and result.p99_ms <= HOT_P99_MS,
                f"p99 {result.p99_ms} ms > {HOT_P99_MS} ms",
            ),
        ],
    )
    del run
    return result


def ga_rush(ctx: Context) -> Result:
    data, sizes = ctx.data, ctx.sizes
    assert data.ga_event is not None
    users = [data.users[i % len(data.users)] for i in range(sizes.ga_clients)]
    if len({u for u, _ in users}) < len(users):
        raise BenchError("not enough users were seeded for ga-rush")
    body = f'{{"event_id": {data.ga_event}, "quantity": 1}}'.encode()
    requests = [request_bytes("POST", "/bookings/", ctx.port, body, t) for _, t in users]
    _, result, counts = _rush(
        ctx, "ga-rush", data.ga_event, sizes.ga_capacity, len(users), requests.__getitem__, None
    )
    n = sizes.ga_capacity
    result.target = f"exactly {n:,} sold, 0 5xx"
    result.details["description"] = (
        f'{len(users):,} clients at once, each asking for `{{"quantity": 1}}` on a '
        f"{n:,}-capacity general-admission event."
    )
    if not (counts["sold"] == n and counts["taken"] == n):
        result.misses.append(
            f"sold {counts['sold']} (database: {counts['taken']}), not exactly {n}"
        )
    _judge(result, ctx, [])
    return result


def _requests_file(
    ctx: Context, name: str, seats: dict[int, list[int]], seed: int
) -> tuple[Path, list[tuple[int, str, bytes]]]:
    requests = hold_requests(seats, ctx.data.users, seed)
    path = ctx.run_dir / f"{name}-requests.tsv"
    with path.open("wb") as out:
        for user_id, token, body in requests:
            out.write(f"{user_id}\t{token}\t".encode() + body + b"\n")
    return path, requests


def _holds(
    ctx: Context,
    name: str,
    seats: dict[int, list[int]],
    seconds: float,
    connections: int,
    confirm: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    path, requests = _requests_file(ctx, name, seats, seed=7 if confirm else 11)
    _warm_pools(ctx)
    with Measured(ctx, name, tables=True) as measured:
        if ctx.wrk:
            out = wrk.run(
                ctx.wrk,
                ctx.url("/health"),
                connections=connections,
                threads=ctx.options.wrk_threads,
                seconds=seconds,
                mode="confirm" if confirm else "holds",
                requests_file=path,
                log=ctx.run_dir / "wrk.log",
            )
            figures: dict[str, Any] = {
                "seconds": out.seconds,
                "statuses": out.statuses,
                "transport": out.transport_errors,
                "p50": out.latency_ms["p50"],
                "p99": out.latency_ms["p99"],
                "exhausted": out.exhausted_threads > 0,
                "facts": {
                    "requests": out.requests,
                    "holds sent": out.holds_sent,
                    "confirms sent": out.confirms_sent,
                    "p90 ms": out.latency_ms["p90"],
                    "max ms": out.latency_ms["max"],
                    "request pool": len(requests),
                },
            }
        else:
            run: Run = _uvloop_run(
                loadgen.closed_loop(
                    ctx.port,
                    connections,
                    seconds,
                    ctx.sizes.client_timeout_s,
                    loadgen.hold_step(ctx.port, requests, confirm),
                )
            )
            p50, p99 = _python_latency(run)
            figures = {
                "seconds": run.seconds,
                "statuses": run.statuses(),
                "transport": dict(run.transport_errors),
                "p50": p50,
                "p99": p99,
                "exhausted": run.exhausted,
                "facts": {
                    "requests": len(run.samples),
                    "hold p50/p99 ms": _python_latency(run, "hold"),
                    "confirm p50/p99 ms": _python_latency(run, "confirm"),
                    "request pool": len(requests),
                    "generator CPU s": round(run.cpu_seconds, 2),
                },
            }
    if figures["exhausted"]:
        figures["facts"]["request pool exhausted"] = (
            "yes: the rate is a lower bound; raise the seat counts in scripts/bench/options.py"
        )
    return figures, measured.details


def spread(ctx: Context) -> Result:
    sizes, seats = ctx.sizes, ctx.data.spread_seats
    figures, details = _holds(
        ctx, "spread", seats, sizes.spread_seconds, sizes.spread_connections, confirm=False
    )
    holds = figures["statuses"].get(201, 0)
    rate = holds / figures["seconds"] if figures["seconds"] else 0.0
    result = Result(
        scenario="spread",
        headline=f"{rate:,.0f} holds/s",
        throughput=round(rate, 1),
        unit="holds/s",
        p50_ms=figures["p50"],
        p99_ms=figures["p99"],
        statuses=figures["statuses"],
        transport_errors=figures["transport"],
        target=f">= {SPREAD_HOLDS_PER_S:,} holds/s, p99 <= {SPREAD_P99_MS} ms",
        details={
            **details,
            "description": (
                f"{sizes.spread_connections} connections, {sizes.spread_seconds} s: holds of "
                f"1-4 seats chosen so that no two requests overlap, across {len(seats)} events "
                f"of {sizes.spread_seats:,} seats, each (user, event) used once."
            ),
            "facts": figures["facts"],
            "generator": {"tool": _generator(ctx), "connections": sizes.spread_connections},
        },
    )
    _invariants(ctx, result, list(seats))
    _db_per_success(result.details, holds)
    refused = sum(n for s, n in result.statuses.items() if 400 <= s < 500)
    if refused:
        result.misses.append(f"{refused} holds of free seats were refused (4xx)")
    _judge(
        result,
        ctx,
        [
            (rate >= SPREAD_HOLDS_PER_S, f"{rate:,.0f} holds/s < {SPREAD_HOLDS_PER_S:,}"),
            (
                figures["p99"] is not None and figures["p99"] <= SPREAD_P99_MS,
                f"p99 {figures['p99']} ms > {SPREAD_P99_MS} ms",
            ),
        ],
    )
    return result


def confirm_flow(ctx: Context) -> Result:
    sizes, seats = ctx.sizes, ctx.data.confirm_seats
    figures, details = _holds(
        ctx, "confirm-flow", seats, sizes.confirm_seconds, sizes.confirm_connections, confirm=True
    )
    pairs = figures["statuses"].get(200, 0)
    rate = pairs / figures["seconds"] if figures["seconds"] else 0.0
    result = Result(
        scenario="confirm-flow",
        headline=f"{rate:,.0f} pairs/s",
        throughput=round(rate, 1),
        unit="pairs/s",
        p50_ms=figures["p50"],
        p99_ms=figures["p99"],
        statuses=figures["statuses"],
        transport_errors=figures["transport"],
        target="0 5xx",
        details={
            **details,
            "description": (
                f"{sizes.confirm_connections} connections, {sizes.confirm_seconds} s: hold 1-4 "
                "free seats, then confirm that booking (payment simulated); a pair is a "
                "confirmed booking. Latency is over both kinds of request."
            ),
            "facts": figures["facts"],
            "generator": {"tool": _generator(ctx), "connections": sizes.confirm_connections},
        },
    )
    _invariants(ctx, result, list(seats))
    _db_per_success(result.details, pairs)
    refused = sum(n for s, n in result.statuses.items() if 400 <= s < 500)
    if refused:
        result.misses.append(f"{refused} requests were refused (4xx)")
    _judge(result, ctx, [])
    return result


RUNNERS: dict[str, Callable[[Context], Result]] = {
    "read-uncached": read_uncached,
    "read-cached": read_cached,
    "events-list": events_list,
    "hot-event": hot_event,
    "ga-rush": ga_rush,
    "spread": spread,
    "confirm-flow": confirm_flow,
}


def cache_ratio(results: list[Result], quick: bool) -> Result | None:
    """The headline row: read-cached throughput over read-uncached."""
    by_name = {r.scenario: r for r in results}
    cached, uncached = by_name.get("read-cached"), by_name.get("read-uncached")
    if not cached or not uncached or not cached.throughput or not uncached.throughput:
        return None
    ratio = cached.throughput / uncached.throughput
    result = Result(
        scenario="cached/uncached",
        headline=f"{ratio:.1f}x",
        throughput=round(ratio, 2),
        unit="x",
        p50_ms=None,
        p99_ms=None,
        statuses={},
        target=f">= {CACHE_RATIO}x",
    )
    if not quick:
        if ratio < CACHE_RATIO:
            result.misses.append(f"cached/uncached is {ratio:.1f}x < {CACHE_RATIO}x")
        result.met = not result.misses
    return result


NOISE_CORES = 0.2  # used by processes that are not ours: the figures are not trustworthy


def noise(result: Result) -> float:
    """Cores other processes (another test run, say) took during the scenario."""
    cores = result.details.get("cpu", {}).get("cores", {})
    others = float(cores.get("other processes", 0.0)) + float(cores.get("postgres (rest)", 0.0))
    return round(others, 2)


def summary_line(result: Result) -> str:
    extra = _cpu_line(result.details)
    line = f"    {result.headline}, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms" + (
        f"; cores: {extra}" if extra else ""
    )
    if noise(result) > NOISE_CORES:
        line += f"\n    NOISY: other processes used {noise(result)} cores meanwhile"
    return line
