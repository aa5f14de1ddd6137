"""login-rush: a thousand real logins in a few seconds while others read the map and hold.

At an on-sale people log in at the last moment. Each login is a bcrypt check at the
production cost (the accounts' shared hash has 12 rounds, seed.py), about 0.3 s of CPU:
far more work than two cores can do in the rush, so what is measured is the overload
policy (DESIGN §9): every login answered in bounded time, 200 or 429/503 with
`Retry-After`, and the other customers (map readers, buyers already logged in) not
starved meanwhile.

This scenario runs on a server of its own (main.py), with the production settings for
it: rate limits on, BCRYPT_ROUNDS=12. Each person comes from an address of their own
(`X-Forwarded-For`, which uvicorn trusts from 127.0.0.1 as it would from a proxy), so
the per-address login limit applies as it would to people on their own connections.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from scripts.bench.client import Connection, TransportError, request_bytes
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.onsale import read_map, warm_map
from scripts.bench.people import FilesPeak, login_request, percentiles
from scripts.bench.report import Result
from scripts.bench.salefacts import (
    Reads,
    merged_statuses,
    merged_transport,
    route,
    server_errors_line,
)
from scripts.bench.scenarios import Context, Measured, _invariants, _warm_pools
from scripts.bench.seed import PASSWORD, rush_email

MAP_P99_MS = 50
HOLD_P99_MS = 150
HOLDS_PER_HOLDER = 8  # under the per-user cap of 10 seats per event
HOLD_EVERY_S = 1.0
PRODUCTION_AUTH = {"RATE_LIMIT_ENABLED": "true", "BCRYPT_ROUNDS": "12"}  # main.py


@dataclass(frozen=True)
class Login:
    status: int  # 0: no answer (see `error`)
    seconds: float  # from before connecting to the answer
    retry_after: bool
    wait_s: float | None = None  # the Retry-After, when it was a number of seconds
    error: str = ""


@dataclass
class Rush:
    logins: list[Login] = field(default_factory=list)
    holds: Run = field(default_factory=Run)
    reads: Reads | None = None
    files: FilesPeak | None = None
    seconds: float = 0.0  # first login sent -> last login answered


def _address(index: int) -> str:
    return f"10.77.{index // 250}.{index % 250 + 1}"


async def _log_in(port: int, index: int, at: float, timeout_s: float, rush: Rush) -> None:
    await asyncio.sleep(at)
    data = login_request(port, rush_email(index), PASSWORD, _address(index))
    conn = Connection(port, timeout_s)
    started = time.perf_counter()
    try:
        reply = await conn.send(data)
    except (TransportError, OSError, TimeoutError) as exc:
        error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        rush.logins.append(Login(0, time.perf_counter() - started, False, error=error))
        return
    finally:
        conn.close()
    if reply.status == 200 and "access_token" not in orjson.loads(reply.body):
        rush.logins.append(Login(0, reply.ended - started, False, error="200 without a token"))
        return
    after = reply.retry_after
    wait = float(after) if after is not None and after.isdigit() else None
    rush.logins.append(Login(reply.status, reply.ended - started, after is not None, wait))


async def _holder(
    port: int, event_id: int, token: str, seats: Sequence[int], stop: asyncio.Event, run: Run
) -> None:
    """A customer already logged in, holding one seat a second while the rush lasts."""
    conn = Connection(port, 30)
    recorder = Recorder(run)
    try:
        for seat in seats:
            body = orjson.dumps({"event_id": event_id, "seat_ids": [seat]})
            data = request_bytes("POST", "/bookings/", port, body, token)
            await recorder.send(conn, "hold", data)
            try:
                await asyncio.wait_for(stop.wait(), HOLD_EVERY_S)
                return
            except TimeoutError:
                continue
    finally:
        conn.close()


async def _rush(ctx: Context, event_id: int, holders: Sequence[tuple[str, Sequence[int]]]) -> Rush:
    sizes, rush, stop = ctx.sizes, Rush(), asyncio.Event()
    rush.files = FilesPeak(ctx.server.worker_pids())
    bound = sizes.login_seconds + 2 * sizes.client_timeout_s + 5
    reading = asyncio.ensure_future(read_map(ctx, f"/events/{event_id}/seats", stop, bound))
    sampling = asyncio.ensure_future(rush.files.run(stop))
    holding = [
        asyncio.ensure_future(_holder(ctx.port, event_id, token, seats, stop, rush.holds))
        for token, seats in holders
    ]
    n = sizes.login_users
    started = time.perf_counter()
    rush.holds.started = started
    try:
        await asyncio.gather(
            *(
                _log_in(ctx.port, i, i * sizes.login_seconds / n, sizes.client_timeout_s, rush)
                for i in range(n)
            )
        )
    finally:
        stop.set()
    rush.seconds = time.perf_counter() - started
    rush.reads = await reading
    await asyncio.gather(sampling, *holding)
    rush.holds.ended = time.perf_counter()
    return rush


def login_rush(ctx: Context) -> Result:
    data, sizes = ctx.data, ctx.sizes
    assert data.login_event is not None
    event = data.login_event
    users = data.users[: sizes.login_holders]
    seats = data.login_seats
    holders = [
        (token, seats[i * HOLDS_PER_HOLDER : (i + 1) * HOLDS_PER_HOLDER])
        for i, (_, token) in enumerate(users)
    ]
    _warm_pools(ctx)
    warm_map(ctx, event)
    with Measured(ctx, "login-rush") as measured:
        rush: Rush = uvloop.run(_rush(ctx, event, holders))
    result = _result(ctx, rush, measured.details)
    _invariants(ctx, result, [event])
    _judge(result, ctx, rush)
    return result


def _login_counts(logins: Sequence[Login]) -> dict[str, Any]:
    statuses = Counter(x.status for x in logins if x.status)
    errors = Counter(x.error for x in logins if x.error)
    other = {s: n for s, n in statuses.items() if s not in (200, 429, 503)}
    return {
        "200": statuses.get(200, 0),
        "429": statuses.get(429, 0),
        "429 with Retry-After": sum(1 for x in logins if x.status == 429 and x.retry_after),
        "503": statuses.get(503, 0),
        "503 with Retry-After": sum(1 for x in logins if x.status == 503 and x.retry_after),
        "Retry-After s (p50, p99, max)": list(
            percentiles([x.wait_s for x in logins if x.wait_s is not None], 1).values()
        ),
        "other statuses": other,
        "no answer": dict(errors),
    }


def _bad_logins(logins: Sequence[Login]) -> int:
    """Logins that were neither 200 nor a 429/503 carrying Retry-After."""
    return sum(
        1 for x in logins if not (x.status == 200 or (x.status in (429, 503) and x.retry_after))
    )


def _server_errors(rush: Rush) -> int:
    """5xx other than the overload answer (503 with Retry-After) on logins; all 5xx elsewhere."""
    overload = 503
    logins = sum(
        1 for x in rush.logins if x.status >= 500 and not (x.status == overload and x.retry_after)
    )
    assert rush.reads is not None
    reads = sum(n for s, n in rush.reads.statuses.items() if s >= 500)
    return logins + reads + sum(n for s, n in rush.holds.statuses().items() if s >= 500)


def _result(ctx: Context, rush: Rush, details: dict[str, Any]) -> Result:
    sizes, reads = ctx.sizes, rush.reads
    assert reads is not None
    assert rush.files is not None
    answered = [x.seconds for x in rush.logins if x.status]
    ms = percentiles(answered)
    holds = route(rush.holds, "hold", rush.seconds)
    counts = _login_counts(rush.logins)
    login_statuses = Counter(x.status for x in rush.logins if x.status)
    statuses = merged_statuses(reads, [rush.holds])
    for status, n in login_statuses.items():
        statuses[status] = statuses.get(status, 0) + n
    return Result(
        scenario="login-rush",
        headline=f"{counts['200']:,} of {len(rush.logins):,} logins 200 in {rush.seconds:.1f} s",
        throughput=round(counts["200"] / rush.seconds, 1) if rush.seconds else None,
        unit="logins/s",
        p50_ms=ms["p50"],
        p99_ms=ms["p99"],
        statuses=dict(sorted(statuses.items())),
        transport_errors={
            **merged_transport(reads, [rush.holds]),
            **{f"login {k}": v for k, v in counts["no answer"].items()},
        },
        target=(
            f"0 5xx; every login 200, or 429/503 with Retry-After; map p99 <= {MAP_P99_MS} ms; "
            f"holds p99 <= {HOLD_P99_MS} ms"
        ),
        details={
            **details,
            "description": _description(ctx),
            "facts": {
                "logins": counts,
                "login ms (answered; from before connecting)": ms,
                "rush s (first login sent to last answered)": round(rush.seconds, 2),
                "map readers during the rush": reads.line(),
                "holds of logged-in buyers": (
                    f"{holds['requests']} holds, p50 {holds['p50']} ms, p99 {holds['p99']} ms, "
                    f"{holds['statuses']}"
                ),
                "5xx (503 with Retry-After on logins excepted)": _server_errors(rush),
                "5xx of the map readers and holds": server_errors_line(reads, [rush.holds]),
                "open files (peak)": rush.files.facts(),
            },
            "generator": {
                "tool": f"python (uvloop, logins and holds) + {reads.tool} (readers)",
                "logins": sizes.login_users,
                "holders": sizes.login_holders,
            },
        },
    )


def _description(ctx: Context) -> str:
    sizes = ctx.sizes
    return (
        f"{sizes.login_users:,} people log in (POST /auth/login, OAuth2 form; bcrypt at 12 "
        f"rounds, the production cost), evenly over {sizes.login_seconds} s, each on a new "
        f"connection from an address of its own; meanwhile map readers GET a "
        f"{sizes.login_event_seats}-seat event's map and {sizes.login_holders} customers "
        f"already logged in hold one seat a second. Own server start, with rate limits on "
        f"and BCRYPT_ROUNDS=12. Latency columns: the logins (answered ones). Each login "
        f"waits up to {sizes.client_timeout_s:.0f} s for its answer."
    )


def _judge(result: Result, ctx: Context, rush: Rush) -> None:
    """The targets; a 503 with Retry-After is the overload policy's answer, not a failure."""
    bad, errors = _bad_logins(rush.logins), _server_errors(rush)
    assert rush.reads is not None
    holds = route(rush.holds, "hold", rush.seconds)
    if errors:
        result.misses.append(f"{errors} responses were 5xx (not 503 with Retry-After)")
    if ctx.options.quick:
        result.met = None if not result.misses else False
        return
    checks = [
        (not bad, f"{bad} logins were neither 200 nor 429/503 with Retry-After"),
        (
            rush.reads.p99 is not None and rush.reads.p99 <= MAP_P99_MS,
            f"map p99 {rush.reads.p99} ms > {MAP_P99_MS} ms",
        ),
        (
            holds["p99"] is not None and holds["p99"] <= HOLD_P99_MS,
            f"holds p99 {holds['p99']} ms > {HOLD_P99_MS} ms",
        ),
    ]
    result.misses += [sentence for ok, sentence in checks if not ok]
    result.met = not result.misses


RUNNERS: dict[str, Callable[[Context], Result]] = {"login-rush": login_rush}
