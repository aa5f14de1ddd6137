"""What the machine and PostgreSQL did during a scenario.

- CPU seconds by process group (API workers, PostgreSQL backends of the benchmark
  database, the rest of PostgreSQL, Redis, the load generator), from /proc: on a
  two-core machine this says who the cores went to.
- PostgreSQL sessions sampled every 20 ms from pg_stat_activity: how many were on CPU,
  waiting for a lock, or "idle in transaction" (holding locks while the API does Python
  work between statements). Mean backends in a state x duration = time spent in it.
- pg_stat_statements, when the server has it loaded: the statements that took the time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # it ships no type hints

SAMPLE_EVERY_S = 0.02
TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU ------------------------------------------------------------------------------


def _proc_cpu(pid: int) -> tuple[str, str, float, float] | None:
    """(comm, cmdline, cpu seconds, cpu seconds of its ended children) of a process, or None
    when it is gone. PostgreSQL's postmaster collects its ended backends' time: a pool that
    closes connections would otherwise lose it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    ended = (int(fields[13]) + int(fields[14])) / TICKS  # cutime + cstime
    return comm, cmdline, own, ended


_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _machine_ticks() -> dict[str, int]:
    """Jiffies of the whole machine by kind (the first line of /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return dict(zip(_STAT_FIELDS, values, strict=False))


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy on the whole machine over `seconds` (before we start: is it quiet?)."""
    before = _machine_ticks()
    time.sleep(seconds)
    after = _machine_ticks()
    ticks = {k: after[k] - before[k] for k in after}
    total = sum(ticks.values())
    idle = ticks.get("idle", 0) + ticks.get("iowait", 0)
    return round((os.cpu_count() or 1) * (total - idle) / total, 2) if total else 0.0


@dataclass
class CpuSnapshot:
    at: float
    machine: dict[str, int]
    by_pid: dict[int, tuple[str, float]]
    own: float  # this process + its waited-for children (wrk)


def cpu_snapshot(api_pids: list[int], database: str) -> CpuSnapshot:
    groups: dict[int, tuple[str, float]] = {}
    api = set(api_pids)  # [supervisor, worker 1, worker 2, ...]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        found = _proc_cpu(pid)
        if found is None:
            continue
        comm, cmdline, seconds, ended = found
        if pid in api:
            index = api_pids.index(pid)
            group = "api supervisor" if index == 0 and len(api_pids) > 1 else f"api {index or 1}"
        elif comm == "postgres" or cmdline.startswith("postgres"):
            group = "postgres (bench db)" if f" {database} " in cmdline else "postgres (rest)"
            if ended:  # the postmaster: all the work of backends that ended (pool overflow)
                groups[-pid] = ("postgres (connections closed meanwhile)", ended)
        elif comm in ("redis-server", "valkey-server"):
            group = "redis"
        elif comm == "py-spy":
            group = "py-spy"
        else:
            continue
        groups[pid] = (group, seconds)
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return CpuSnapshot(time.monotonic(), _machine_ticks(), groups, own)


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """Cores used by each group between two snapshots (1.0 = one core busy all along)."""
    wall = after.at - before.at
    if wall <= 0:
        return {}
    spent: dict[str, float] = {}
    for pid, (group, seconds) in after.by_pid.items():
        start = before.by_pid.get(pid)
        used = seconds - (start[1] if start and start[0] == group else 0.0)
        spent[group] = spent.get(group, 0.0) + used
    spent["load generator"] = after.own - before.own
    ticks = {k: after.machine[k] - before.machine[k] for k in after.machine}
    total = sum(ticks.values())
    cores = os.cpu_count() or 1

    def as_cores(*kinds: str) -> float:
        return cores * sum(ticks.get(k, 0) for k in kinds) / total if total else 0.0

    busy = as_cores(*(k for k in ticks if k not in ("idle", "iowait")))
    # Interrupt work (loopback TCP is mostly softirq) and a hypervisor's steal are not
    # any process's time; what is left is other processes (on a shared machine: noise).
    kernel = as_cores("irq", "softirq")
    steal = as_cores("steal")
    spent["kernel irq/softirq"] = kernel * wall
    spent["steal"] = steal * wall
    spent["other processes"] = max(0.0, busy * wall - sum(spent.values()))
    return {
        "seconds": round(wall, 2),
        "machine_busy_cores": round(busy, 2),
        "cores": {
            k: round(v / wall, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0
        },
    }


# -- PostgreSQL -----------------------------------------------------------------------

_ACTIVITY = """
SELECT state, wait_event_type, wait_event
FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


def _label(state: str | None, wait_type: str | None, wait: str | None) -> str:
    if state == "active":
        return f"active, waiting {wait_type}:{wait}" if wait_type else "active, on CPU"
    if state == "idle in transaction":
        return "idle in transaction (waiting for the API)"
    return state or "unknown"


@dataclass
class Sessions:
    samples: int = 0
    states: Counter[str] = field(default_factory=Counter)
    max_connections: int = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        if not self.samples:
            return {}
        mean = {k: round(v / self.samples, 2) for k, v in self.states.most_common()}
        busy = sum(v for k, v in mean.items() if k.startswith(("active", "idle in transaction")))
        return {
            "samples": self.samples,
            "max_connections": self.max_connections,
            "mean_backends": mean,
            "busy_backend_seconds": round(busy * seconds, 2),
        }


class SessionSampler:
    """Samples pg_stat_activity of the benchmark database in a thread of its own."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self.sessions = Sessions()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def __enter__(self) -> SessionSampler:
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            asyncio.run(self._sample())
        except Exception as exc:  # the figures are extra; never fail a run over them
            self.error = f"{type(exc).__name__}: {exc}"

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(_ACTIVITY, self.database)
                self.sessions.samples += 1
                self.sessions.max_connections = max(self.sessions.max_connections, len(rows))
                for row in rows:
                    self.sessions.states[_label(*row)] += 1
                await asyncio.sleep(SAMPLE_EVERY_S)
        finally:
            await conn.close()


_TABLES = """
SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
"""
TABLE_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "inserted", "updated", "deleted")


async def table_stats(dsn: str) -> dict[str, tuple[int, ...]]:
    """Cumulative per-table counters (backends report them within a second or so)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(_TABLES)
    finally:
        await conn.close()
    return {str(r[0]): tuple(int(v) for v in r[1:]) for r in rows}


def table_deltas(
    before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]
) -> dict[str, dict[str, int]]:
    """What each table saw in between; tables with no activity left out."""
    found: dict[str, dict[str, int]] = {}
    for table, values in sorted(after.items()):
        start = before.get(table, (0,) * len(values))
        delta = {k: v - s for k, v, s in zip(TABLE_COUNTERS, values, start, strict=True)}
        if any(delta.values()):
            found[table] = delta
    return found


_STATEMENTS = """
SELECT s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = $1 AND s.query NOT ILIKE '%pg_stat_%'
ORDER BY s.total_exec_time DESC
"""


async def statements_available(dsn: str) -> bool:
    """True when pg_stat_statements is loaded (shared_preload_libraries) and installable."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    return True


async def reset_statements(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def top_statements(dsn: str, database: str, limit: int = 10) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(_STATEMENTS, database)
    finally:
        await conn.close()
    total_ms = sum(float(r["total_exec_time"]) for r in rows)
    return {
        "total_exec_ms": round(total_ms, 1),
        "calls": sum(int(r["calls"]) for r in rows),
        "top": [
            {
                "query": " ".join(str(r["query"]).split())[:300],
                "calls": int(r["calls"]),
                "total_ms": round(float(r["total_exec_time"]), 1),
                "mean_ms": round(float(r["mean_exec_time"]), 3),
                "share": round(float(r["total_exec_time"]) / total_ms, 3) if total_ms else 0,
            }
            for r in rows[:limit]
        ],
    }
