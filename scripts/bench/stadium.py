"""stadium: the on-sale on a 50,000-seat event, and what the venue's size does to a hold.

Before the sale, with nobody else on the server:
- the uncached seat map: a 1-seat hold (which invalidates the cached map), then
  `GET /events/{id}/seats` until an answer does not come from the cache (no
  `X-Cache: hit`): that answer was built from the database, and its time is the figure;
- paced holds: the same number of 1-seat holds of free seats, PACED_CONNECTIONS at a
  time, on the stadium and on a reference event of `reference_seats` seats: p50 of each;
- a flash: `flash_holds` 1-seat holds of free seats sent at once (connections opened
  beforehand), on the stadium and on another reference event: holds per second of each.
Then onsale's sale (scripts/bench/onsale.py) on the stadium, with a share of the buyers
asking for "any N" seats instead of choosing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvloop

from scripts.bench import loadgen, onsale, salefacts
from scripts.bench.client import Connection, Reply, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.people import SaleSpec, percentiles
from scripts.bench.report import Result
from scripts.bench.scenarios import Context, _invariants, _judge, _warm_pools

HOLD_P50_RATIO = 1.2
UNCACHED_MAP_MS = 150
PACED_CONNECTIONS = 8
UNCACHED_SAMPLES = 3  # reads that rebuilt the map after a hold
UNCACHED_HOLDS = 6  # at most, to get them
MISS_WAIT_S = 2.0  # after a hold, reads until one misses the cache, this long at most
MISS_POLL_S = 0.05
ANY_SHARE = 0.3  # of the sale's buyers, who ask for "any N" seats


@dataclass(frozen=True)
class Holds:
    """Holds of free seats, one seat each: its Run and the figures the targets use."""

    run: Run

    @property
    def won(self) -> list[float]:
        return [s.ended for s in self.run.samples if s.status == 201]

    @property
    def p50(self) -> float | None:
        return _ms([s for s in self.run.samples if s.status == 201], 50)

    @property
    def p99(self) -> float | None:
        return _ms([s for s in self.run.samples if s.status == 201], 99)

    @property
    def per_second(self) -> float:
        won = self.won
        return len(won) / (max(won) - self.run.started) if won else 0.0

    @property
    def refused(self) -> int:
        return sum(1 for s in self.run.samples if s.status != 201)


def _ms(samples: Sequence[loadgen.Sample], pct: int) -> float | None:
    values = percentiles([s.ended - s.started for s in samples])
    return values["p50"] if pct == 50 else values["p99"]


def _hold_body(event_id: int, seat: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "seat_ids": [seat]})


def _paced(
    ctx: Context, event_id: int, seats: Sequence[int], users: Sequence[tuple[int, str]]
) -> Holds:
    requests = [
        (user_id, token, _hold_body(event_id, seat))
        for (user_id, token), seat in zip(users, seats, strict=False)
    ]
    _warm_pools(ctx)
    step = loadgen.hold_step(ctx.port, requests, confirm=False)
    run: Run = uvloop.run(
        loadgen.closed_loop(
            ctx.port, PACED_CONNECTIONS, ctx.sizes.sale_deadline_s, ctx.sizes.client_timeout_s, step
        )
    )
    return Holds(run)


def _flash(
    ctx: Context, event_id: int, seats: Sequence[int], users: Sequence[tuple[int, str]]
) -> Holds:
    data = [
        request_bytes("POST", "/bookings/", ctx.port, _hold_body(event_id, seat), token)
        for (_, token), seat in zip(users, seats, strict=False)
    ]

    async def behaviour(i: int, conn: Connection, recorder: Recorder) -> None:
        await recorder.send(conn, "flash", data[i])

    _warm_pools(ctx)
    run: Run = uvloop.run(
        loadgen.clients(ctx.port, len(data), ctx.sizes.client_timeout_s, behaviour)
    )
    return Holds(run)


def _uncached_map(ctx: Context, event_id: int, seats: Sequence[int], token: str) -> dict[str, Any]:
    """Hold a seat, then read the map until a read is not served from the cache (the read
    that rebuilt it); UNCACHED_SAMPLES such reads, from at most len(seats) holds."""
    read = request_bytes("GET", f"/events/{event_id}/seats", ctx.port)
    run, misses, delays, never = Run(), list[float](), list[float](), 0

    async def sample() -> None:
        nonlocal never
        conn = Connection(ctx.port, ctx.sizes.client_timeout_s)
        recorder = Recorder(run)
        try:
            for seat in seats:
                if len(misses) >= UNCACHED_SAMPLES:
                    break
                post = request_bytes(
                    "POST", "/bookings/", ctx.port, _hold_body(event_id, seat), token
                )
                held = await recorder.send(conn, "hold", post)
                if held is None or held.status != 201:
                    continue
                miss = await _first_miss(conn, recorder, read, held.ended)
                if miss is None:
                    never += 1
                else:
                    misses.append(miss.ms)
                    delays.append((miss.started - held.ended) * 1000)
                await recorder.send(conn, "again", read)
        finally:
            conn.close()

    uvloop.run(sample())
    again = [s for s in run.samples if s.kind == "again" and s.status == 200]
    return {
        "run": run,
        "uncached ms": [round(ms, 1) for ms in misses],
        "median": sorted(misses)[len(misses) // 2] if misses else None,
        "read sent ms after the 201": [round(ms) for ms in delays],
        "holds whose map was not rebuilt by a read within the wait": never,
        "cached ms": [round(s.ms, 1) for s in again],
        "cached hits": sum(1 for s in again if s.cache_hit),
    }


async def _first_miss(
    conn: Connection, recorder: Recorder, read: bytes, held_at: float
) -> Reply | None:
    """The first read after `held_at` not served from the cache (None: none within the wait)."""
    while time.perf_counter() - held_at < MISS_WAIT_S:
        reply = await recorder.send(conn, "after a hold", read)
        if reply is not None and reply.status == 200 and not reply.cache_hit:
            return reply
        await asyncio.sleep(MISS_POLL_S)
    return None


@dataclass
class Before:
    uncached: dict[str, Any]
    paced_ref: Holds
    paced_big: Holds
    flash_ref: Holds
    flash_big: Holds


def _before_sale(ctx: Context) -> Before:
    data, sizes = ctx.data, ctx.sizes
    big, paced, flash = data.stadium_event, data.paced_event, data.flash_event
    assert big is not None
    assert paced is not None
    assert flash is not None
    pool = list(data.stadium_seats)
    random.Random(50_000).shuffle(pool)
    k, m, f = UNCACHED_HOLDS, sizes.paced_holds, sizes.flash_holds
    paced_users = data.users[sizes.buyers : sizes.buyers + m]
    flash_users = data.users[sizes.buyers + m : sizes.buyers + m + f]
    if len(flash_users) < f or len(data.flash_seats) < f or len(data.paced_seats) < m:
        raise BenchError("stadium needs more customers or reference seats (options.py)")
    _warm_pools(ctx)
    uncached = _uncached_map(ctx, big, pool[:k], data.users[-1][1])
    return Before(
        uncached=uncached,
        paced_ref=_paced(ctx, paced, data.paced_seats[:m], paced_users),
        paced_big=_paced(ctx, big, pool[k : k + m], paced_users),
        flash_ref=_flash(ctx, flash, data.flash_seats[:f], flash_users),
        flash_big=_flash(ctx, big, pool[k + m : k + m + f], flash_users),
    )


def stadium(ctx: Context) -> Result:
    data, sizes = ctx.data, ctx.sizes
    assert data.stadium_event is not None
    big = data.stadium_event
    before = _before_sale(ctx)
    tokens, login_s = onsale.buyers_tokens(ctx, 0, sizes.buyers)
    spec = SaleSpec(
        port=ctx.port,
        event_id=big,
        tokens=tokens,
        arrival_s=sizes.arrival_s,
        deadline_s=sizes.sale_deadline_s,
        timeout_s=sizes.client_timeout_s,
        any_share=ANY_SHARE,
    )
    _warm_pools(ctx)
    run, subscribers, details = onsale.run_sale(
        ctx, "stadium", spec, lambda: onsale.warm_map(ctx, big)
    )
    facts = _facts(ctx, before, run, subscribers)
    facts["buyers' logins before the sale"] = f"{len(tokens)} in {login_s:.1f} s"
    result = _result(ctx, before, run, facts, details)
    events = [big, data.paced_event, data.flash_event]
    _invariants(ctx, result, [e for e in events if e is not None])
    _judge(result, ctx, _checks(before))
    return result


def _facts(
    ctx: Context, before: Before, run: salefacts.SaleRun, subscribers: dict[str, Any]
) -> dict[str, Any]:
    n = ctx.sizes.reference_seats
    u = before.uncached
    seats = len(ctx.data.stadium_seats)
    return {
        "uncached map ms (the read that rebuilt it after a hold)": (
            f"{u['uncached ms']}, sent {u['read sent ms after the 201']} ms after the hold's "
            f"201; {u['holds whose map was not rebuilt by a read within the wait']} holds "
            f"after which every read within {MISS_WAIT_S:.0f} s came from the cache"
        ),
        "cached map ms (the read after)": f"{u['cached ms']} ({u['cached hits']} hits)",
        f"paced hold p50/p99 ms, {seats:,} seats": _paced_line(before.paced_big),
        f"paced hold p50/p99 ms, {n} seats": _paced_line(before.paced_ref),
        f"flash holds/s, {seats:,} seats": _flash_line(before.flash_big),
        f"flash holds/s, {n} seats": _flash_line(before.flash_ref),
        **{f"sale: {k}": v for k, v in salefacts.sale_facts(run, subscribers, seats).items()},
        "sale: onsale's targets, for reference": _reference(run, subscribers),
    }


def _paced_line(holds: Holds) -> str:
    return f"{holds.p50} / {holds.p99} ({holds.run.statuses()})"


def _flash_line(holds: Holds) -> str:
    return (
        f"{holds.per_second:,.0f} ({len(holds.won)} won, p50 {holds.p50} ms, "
        f"p99 {holds.p99} ms, {holds.run.statuses()})"
    )


def _reference(run: salefacts.SaleRun, subscribers: dict[str, Any]) -> str:
    missed = [text for ok, text in salefacts.sale_checks(run, subscribers) if not ok]
    return "all met" if not missed else "; ".join(missed)


def _ratio(before: Before) -> float | None:
    big, ref = before.paced_big.p50, before.paced_ref.p50
    return big / ref if big is not None and ref else None


def _checks(before: Before) -> list[tuple[bool, str]]:
    ratio = _ratio(before)
    fb, fr = before.flash_big.per_second, before.flash_ref.per_second
    uncached = before.uncached["median"]
    return [
        (
            ratio is not None and ratio <= HOLD_P50_RATIO,
            f"hold p50 {before.paced_big.p50} ms is {ratio or 0:.2f}x the small event's "
            f"{before.paced_ref.p50} ms (> {HOLD_P50_RATIO}x)",
        ),
        (fb >= fr, f"flash {fb:,.0f} holds/s < {fr:,.0f} on the small event"),
        (
            uncached is not None and uncached <= UNCACHED_MAP_MS,
            f"uncached map {uncached and round(uncached)} ms > {UNCACHED_MAP_MS} ms"
            if uncached is not None
            else "the uncached map was not measured (every read after the holds was a hit)",
        ),
    ]


def _result(
    ctx: Context,
    before: Before,
    run: salefacts.SaleRun,
    facts: dict[str, Any],
    details: dict[str, Any],
) -> Result:
    sizes = ctx.sizes
    seats = len(ctx.data.stadium_seats)
    ratio = _ratio(before)
    uncached = before.uncached["median"]
    runs = [
        run.sale.run,
        before.uncached["run"],
        *(h.run for h in (before.paced_ref, before.paced_big, before.flash_ref, before.flash_big)),
    ]
    result = Result(
        scenario="stadium",
        headline=(
            f"hold p50 {ratio or 0:.2f}x; flash {before.flash_big.per_second:,.0f} vs "
            f"{before.flash_ref.per_second:,.0f} holds/s; uncached map "
            f"{round(uncached) if uncached is not None else '-'} ms"
        ),
        throughput=round(before.flash_big.per_second, 1),
        unit="holds/s",
        p50_ms=before.paced_big.p50,
        p99_ms=before.paced_big.p99,
        statuses=salefacts.merged_statuses(run.reads, runs),
        transport_errors=salefacts.merged_transport(run.reads, runs),
        target=(
            f"hold p50 <= {HOLD_P50_RATIO}x the {sizes.reference_seats}-seat event's; flash >= "
            f"its holds/s; uncached map <= {UNCACHED_MAP_MS} ms; 0 5xx"
        ),
        details={
            **details,
            "description": _description(ctx, seats),
            "facts": facts,
            "generator": {"tool": f"{run.reads.tool} (readers) + python (uvloop)"},
        },
    )
    refused = before.paced_ref.refused + before.paced_big.refused
    refused += before.flash_ref.refused + before.flash_big.refused
    if refused:
        result.misses.append(f"{refused} paced or flash holds of free seats were refused")
    return result


def _description(ctx: Context, seats: int) -> str:
    sizes = ctx.sizes
    return (
        f"A {seats:,}-seat event ({sizes.stadium_sections} sections x {sizes.stadium_rows} rows "
        f"x 50 seats). Before its sale: the uncached map (after a 1-seat hold, the map is "
        f"read every {MISS_POLL_S * 1000:.0f} ms until a read is not served from the cache: "
        f"that read's time; the cache stays on); {sizes.paced_holds} paced 1-seat "
        f"holds ({PACED_CONNECTIONS} connections) on it and on a {sizes.reference_seats}-seat "
        f"event, compared by p50 (the latency columns: the stadium's); a flash of "
        f"{sizes.flash_holds} 1-seat holds sent at once on each. Then onsale's sale on it: "
        f"{sizes.buyers:,} buyers ({ANY_SHARE:.0%} of them asking for any N), map readers, "
        f"{sizes.subscribers} live subscribers."
    )


RUNNERS: dict[str, Callable[[Context], Result]] = {"stadium": stadium}
