"""Running wrk with bench.lua and reading the JSON line its done() prints."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.environment import BenchError

LUA = Path(__file__).with_name("bench.lua")
MARKER = "BENCH_JSON "
REQUEST_TIMEOUT = "10s"


@dataclass
class WrkResult:
    seconds: float
    requests: int
    statuses: dict[int, int]
    transport_errors: dict[str, int]
    latency_ms: dict[str, float]
    exhausted_threads: int = 0
    holds_sent: int = 0
    confirms_sent: int = 0
    cache_hits: int = 0  # responses with `X-Cache: hit`
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(
    wrk: str,
    url: str,
    *,
    connections: int,
    threads: int,
    seconds: float,
    mode: str = "get",
    requests_file: Path | None = None,
    log: Path | None = None,
) -> WrkResult:
    """One bounded wrk run against 127.0.0.1 (`url` is built by the caller from the port)."""
    assert url.startswith("http://127.0.0.1:"), url
    threads = max(1, min(threads, connections))
    duration = max(1, math.ceil(seconds))  # wrk takes whole seconds
    command = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        REQUEST_TIMEOUT,
        "-s",
        str(LUA),
        url,
        "--",
        mode,
        str(requests_file or "-"),
        str(threads),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(command)}") from exc
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    data: dict[str, Any] = json.loads(line[len(MARKER) :])
    latency = data["latency_us"]
    errors = {k: int(v) for k, v in data["errors"].items() if k != "status" and v}
    return WrkResult(
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        transport_errors=errors,
        latency_ms={k: round(float(v) / 1000, 2) for k, v in latency.items()},
        exhausted_threads=int(data["exhausted_threads"]),
        holds_sent=int(data["holds_sent"]),
        confirms_sent=int(data["confirms_sent"]),
        cache_hits=int(data["cache_hits"]),
        raw=data,
    )
