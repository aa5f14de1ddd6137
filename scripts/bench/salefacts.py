"""What a sale did, route by route, and onsale's targets: the figures of onsale and stadium.

Kept apart from the sale itself (scripts/bench/onsale.py) so each module stays small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scripts.bench import live
from scripts.bench.loadgen import Run
from scripts.bench.people import FilesPeak, Probe, Sale, percentiles

MAP_RPS = 4000
MAP_P99_MS = 50
MAP_LAG_S = 1.0
LIVE_LAG_MS = 100
GRACE_S = 1.5  # after the last buyer: the probe and subscribers may still see late changes


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


@dataclass
class SaleRun:
    sale: Sale
    reads: Reads
    probe: Probe
    files: FilesPeak


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
