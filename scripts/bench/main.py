"""`python -m scripts.bench`: set up, run the scenarios, report, and clean up.

Exit status: 0 when every invariant held (targets may still be missed; they are in the
table), 1 when an invariant was broken or the run could not complete, 3 with `--strict`
when a target was missed, 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.bench import (
    environment,
    login_rush,
    monitor,
    onsale,
    scenarios,
    stadium,
    waiting_room,
)
from scripts.bench.environment import BenchError
from scripts.bench.options import SCENARIOS, Options, parse
from scripts.bench.report import Result, stamp_now, table, write
from scripts.bench.server import Server, server_command
from scripts.processes import raise_interrupt, signals

QUIET_CORES = 0.25  # more than this busy before we start: say the figures will suffer
RUNNERS: dict[str, Callable[[scenarios.Context], Result]] = {
    **scenarios.RUNNERS,
    **onsale.RUNNERS,
    **stadium.RUNNERS,
    **login_rush.RUNNERS,
    **waiting_room.RUNNERS,
}
# Each group runs on a server started with these settings (on top of _server_env's).
GROUPS: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("cache-off", {"CACHE_ENABLED": "false"}, ("read-uncached",)),
    (
        "cache-on",
        {"CACHE_ENABLED": "true"},
        tuple(s for s in SCENARIOS if s not in ("read-uncached", "login-rush")),
    ),
    # Its own start: the logins' backlog must not reach the next scenario.
    ("production-auth", {"CACHE_ENABLED": "true", **login_rush.PRODUCTION_AUTH}, ("login-rush",)),
)


def _raise_open_files(needed: int) -> None:
    """Thousands of client connections (and the server's ends, inherited): lift the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise BenchError(
            f"the open-files limit is {soft}, and the benchmark needs {needed}: "
            f"run `ulimit -n {needed}` first (or raise the hard limit)"
        )


def _clients_at_once(options: Options) -> int:
    """The most connections one scenario opens (the server's ends count as much again)."""
    sizes = options.sizes
    readers = sizes.read_connections + 2
    return max(
        sizes.ga_clients,
        sizes.hot_clients,
        sizes.buyers + sizes.subscribers + readers,
        sizes.login_users + sizes.login_holders + readers,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _say(text: str) -> None:
    print(text, flush=True)


def _loud(text: str) -> None:
    print(f"\n!!! {text}\n", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    try:
        # SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` stops what it started.
        with signals(raise_interrupt, signal.SIGTERM, signal.SIGHUP):
            return _run(options)
    except KeyboardInterrupt:
        _loud("interrupted; everything the benchmark started has been stopped")
        return 130
    except BenchError as exc:
        _loud(f"bench: {exc}")
        return 1


def _save_metrics(server: Server, path: Path) -> None:
    """What GET /metrics says once the group's scenarios ran (for the record)."""
    try:
        with urllib.request.urlopen(f"{server.base_url}/metrics", timeout=10) as response:
            path.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        _say(f"[metrics] not saved: {exc}")
        return
    _say(f"[metrics] scrape saved to {path}")


def _server_env(options: Options, database_url: str, redis_url: str, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        APP_ENV="production",
        SECRET_KEY=secret,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        RATE_LIMIT_ENABLED="false",
        LOG_LEVEL="WARNING",
        LOG_JSON="true",
        DB_POOL_SIZE=str(options.pool_size),
        DB_MAX_OVERFLOW=str(options.max_overflow),
        BCRYPT_ROUNDS="4",  # for the seeded hashes (login-rush: 12, see GROUPS)
        PYTHONUNBUFFERED="1",
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _seed(options: Options, env: dict[str, str]) -> Any:
    # The seeding runs here, through the app's services, with the server's settings.
    for name in ("APP_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "BCRYPT_ROUNDS"):
        os.environ[name] = env[name]
    os.environ["RATE_LIMIT_ENABLED"] = "false"
    from app.core.config import get_settings
    from scripts.bench.seed import seed

    get_settings.cache_clear()
    return asyncio.run(seed(options.sizes, options.only))


def _run(options: Options) -> int:
    sizes = options.sizes
    base_db = os.environ.get("DATABASE_URL") or environment.DEFAULT_DATABASE_URL
    base_redis = os.environ.get("REDIS_URL") or environment.DEFAULT_REDIS_URL
    environment.require_local(base_db, base_redis)
    database_url = environment.bench_database_url(base_db, options.database)
    redis_url = environment.bench_redis_url(base_redis, options.redis_db)
    dsn = environment.plain_dsn(database_url)
    wrk_binary = environment.find_wrk(options)
    py_spy = environment.find_py_spy() if options.profile else None
    if options.profile and py_spy is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    _raise_open_files(2 * _clients_at_once(options) + 1024)
    port = options.port or _free_port()
    stamp, started = stamp_now()
    run_dir = options.results_dir / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _server_env(options, database_url, redis_url, environment.new_secret())

    _say(
        f"Evently benchmark ({'quick' if options.quick else 'full'}): "
        f"{', '.join(options.only)}; {options.workers} workers, DB pool "
        f"{options.pool_size}+{options.max_overflow} per worker, port {port}, "
        f"generator {'wrk' if wrk_binary else 'python'}; results in {run_dir}"
    )
    if wrk_binary is None and options.generator == "auto":
        _say(
            "  wrk is not installed: the built-in generator is used (install wrk for the "
            "real figures: sudo apt-get install -y wrk, or --install-tools)"
        )
    busy = monitor.machine_busy()
    if busy > QUIET_CORES:
        _say(
            f"  warning: {busy} cores are busy before the benchmark starts (another test run?); "
            "every figure will be lower than on a quiet machine"
        )
    clock = time.monotonic()
    asyncio.run(environment.recreate_database(database_url))
    environment.migrate(env)
    environment.flush_redis(redis_url)
    _say(
        f"[setup] database {options.database} recreated and migrated, Redis db "
        f"{options.redis_db} flushed ({time.monotonic() - clock:.1f} s)"
    )
    clock = time.monotonic()
    data = _seed(options, env)
    _say(
        f"[setup] seeded {len(data.users):,} customers and the events "
        f"({time.monotonic() - clock:.1f} s)"
    )
    statements = asyncio.run(monitor.statements_available(dsn))
    machine = asyncio.run(environment.machine(database_url, redis_url, wrk_binary))
    machine["busy_cores_before"] = busy
    if not statements:
        _say(
            "[setup] pg_stat_statements is not loaded on this server: statement timings are "
            "left out (add it to shared_preload_libraries to get them)"
        )

    results: list[Result] = []
    todo = [s for s in SCENARIOS if s in options.only]
    for label, settings, names in GROUPS:
        chosen = [n for n in names if n in options.only]
        if not chosen:
            continue
        metrics_dir = run_dir / f"metrics-{label}"  # a fresh one per server: its counts only
        metrics_dir.mkdir()
        server_env = {**env, **settings, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        clock = time.monotonic()
        log = run_dir / f"server-{label}.log"
        with Server(server_env, port, options.workers, log, options.app) as server:
            shown = ", ".join(f"{k}={v}" for k, v in settings.items())
            _say(
                f"[server] uvicorn up with {shown} "
                f"({time.monotonic() - clock:.1f} s; workers {server.worker_pids()})"
            )
            ctx = scenarios.Context(
                options=options,
                data=data,
                server=server,
                wrk=wrk_binary,
                run_dir=run_dir,
                dsn=dsn,
                database=options.database,
                statements=statements,
                py_spy=py_spy,
            )
            for name in chosen:
                number = todo.index(name) + 1
                _say(f"[{number}/{len(todo)}] {name} ...")
                clock = time.monotonic()
                result = RUNNERS[name](ctx)
                results.append(result)
                _say(scenarios.summary_line(result) + f" ({time.monotonic() - clock:.1f} s)")
                for problem in result.problems:
                    _loud(f"INVARIANT VIOLATED in {name}: {problem}")
                if not server.alive():
                    raise BenchError(f"the API died during {name}; see {server.log_path}")
            _save_metrics(server, run_dir / f"metrics-{label}.txt")

    ratio = scenarios.cache_ratio(results, options.quick)
    ordered = [r for name in SCENARIOS for r in results if r.scenario == name]
    if ratio is not None:
        at = next(i for i, r in enumerate(ordered) if r.scenario == "read-cached") + 1
        ordered.insert(at, ratio)

    problems = [f"{r.scenario}: {p}" for r in ordered for p in r.problems]
    misses = [f"{r.scenario}: {m}" for r in ordered if r.met is False for m in r.misses]
    code = 1 if problems else (3 if misses and options.strict else 0)
    headlines = []
    if ratio is not None:
        headlines.append(f"cached/uncached seat-map throughput: {ratio.headline}")
    noisy = [
        f"{r.scenario} ({scenarios.noise(r)} cores)"
        for r in ordered
        if scenarios.noise(r) > scenarios.NOISE_CORES
    ]
    if noisy:
        headlines.append(
            "NOISY: other processes used CPU during " + ", ".join(noisy) + "; rerun on a "
            "quiet machine before trusting those figures"
        )
    headlines += [f"target missed: {m}" for m in misses]
    headlines += [f"INVARIANT VIOLATED: {p}" for p in problems]
    report = {
        "started": started,
        "quick": options.quick,
        "exit_status": code,
        "commit": environment.git_commit(),
        "options": {
            "only": list(options.only),
            "workers": options.workers,
            "pool_size": options.pool_size,
            "max_overflow": options.max_overflow,
            "wrk_threads": options.wrk_threads,
            "generator": "wrk" if wrk_binary else "python",
            "profile": options.profile,
        },
        "sizes": sizes.__dict__,
        "machine": machine,
        "settings": {
            "command": shlex.join(
                ["uvicorn", *server_command(port, options.workers, options.app)[3:]]
            ),
            "env": (
                f"APP_ENV=production, RATE_LIMIT_ENABLED=false, LOG_LEVEL=WARNING, "
                f"LOG_JSON=true, DB_POOL_SIZE={options.pool_size}, "
                f"DB_MAX_OVERFLOW={options.max_overflow}, CACHE_ENABLED=true "
                f"(false for read-uncached), database {options.database}, "
                f"Redis db {options.redis_db}; login-rush on a server of its own with "
                f"RATE_LIMIT_ENABLED=true, BCRYPT_ROUNDS=12"
            ),
        },
        "headlines": headlines,
        "run_dir": str(run_dir),
    }
    md = write(options.results_dir, stamp, report, ordered)
    _say("")
    _say(table(ordered))
    _say("")
    for line in headlines:
        _say(line)
    _say(f"\nwritten: {md}, {md.with_suffix('.json')}, {options.results_dir / 'latest.md'}")
    if problems:
        _loud("the booking invariants were broken: see above; exit status 1")
    return code
