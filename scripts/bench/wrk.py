"""Running wrk with bench.lua and reading the JSON line its done() prints."""

from __future__ import annotations

import json
import math
import signal
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
    retry_after: int = 0  # 429 and 503 responses with `Retry-After`
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def command(
    wrk: str,
    url: str,
    *,
    connections: int,
    threads: int,
    seconds: float,
    mode: str = "get",
    requests_file: Path | None = None,
) -> list[str]:
    """The wrk command line of one bounded run against 127.0.0.1."""
    assert url.startswith("http://127.0.0.1:"), url
    threads = max(1, min(threads, connections))
    duration = max(1, math.ceil(seconds))  # wrk takes whole seconds
    return [
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
    args = command(
        wrk,
        url,
        connections=connections,
        threads=threads,
        seconds=seconds,
        mode=mode,
        requests_file=requests_file,
    )
    duration = max(1, math.ceil(seconds))
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(args)}") from exc
    return _result(args, done.returncode, done.stdout, done.stderr, log)


class Until:
    """A GET run that lasts until `stop()` (at most its `seconds`): wrk ends early on
    SIGINT and still reports, with the time it actually ran."""

    def __init__(self, wrk: str, url: str, *, connections: int, threads: int, seconds: float):
        self.args = command(wrk, url, connections=connections, threads=threads, seconds=seconds)
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, log: Path | None = None) -> WrkResult:
        if self.running():
            self.process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.communicate()
            raise BenchError(f"wrk did not stop: {' '.join(self.args)}") from exc
        return _result(self.args, self.process.returncode, stdout, stderr, log)


def _result(args: list[str], code: int, stdout: str, stderr: str, log: Path | None) -> WrkResult:
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(args)}\n{stdout}{stderr}\n")
    line = next((x for x in stdout.splitlines() if x.startswith(MARKER)), None)
    if code != 0 or line is None:
        raise BenchError(f"wrk failed (exit {code}): {stderr.strip() or stdout.strip()}")
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
        retry_after=int(data.get("retry_after", 0)),
        raw=data,
    )
