"""The benchmark's own database and Redis database, the tools, and the machine's facts."""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # it ships no type hints
import redis
from sqlalchemy.engine import make_url

from scripts.bench.options import ROOT, Options

BENCH_DATABASE = "evently_bench"
BENCH_REDIS_DB = 14
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/evently"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class BenchError(Exception):
    """Something the operator must fix; printed without a traceback."""


def bench_database_url(base: str, database: str = BENCH_DATABASE) -> str:
    """DATABASE_URL with the database replaced by `evently_bench` (asyncpg dialect)."""
    if not database.startswith(BENCH_DATABASE):
        raise BenchError(f"the benchmark database's name must start with {BENCH_DATABASE}")
    url = make_url(base)
    if url.drivername.split("+")[0] not in ("postgres", "postgresql"):
        raise BenchError(f"DATABASE_URL must point at PostgreSQL, not {url.drivername}")
    url = url.set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def bench_redis_url(base: str, db: int = BENCH_REDIS_DB) -> str:
    """REDIS_URL with database 14, so dev (0) and test (15) data are never touched."""
    head = base.split("?", 1)[0]
    scheme, rest = head.split("://", 1)
    server = rest.split("/", 1)[0]
    return f"{scheme}://{server}/{db}"


def require_local(database_url: str, redis_url: str) -> None:
    """Load goes to 127.0.0.1 only, and so does the data it writes."""
    for name, host in (
        ("DATABASE_URL", make_url(database_url).host or "127.0.0.1"),
        ("REDIS_URL", make_url(redis_url).host or "127.0.0.1"),
    ):
        if host not in LOCAL_HOSTS:
            raise BenchError(
                f"{name} points at {host}; the benchmark only runs against servers on "
                "127.0.0.1 (run it with `make bench`, which finds or starts local ones)"
            )


def plain_dsn(url: str, database: str | None = None) -> str:
    """An asyncpg DSN (no SQLAlchemy dialect suffix), optionally for another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def recreate_database(url: str) -> None:
    """DROP (forcing out any session) and CREATE the benchmark database."""
    name = make_url(url).database
    assert name is not None, url
    assert name.startswith(BENCH_DATABASE), name  # never anything else
    conn = await asyncpg.connect(plain_dsn(url, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def migrate(env: dict[str, str]) -> None:
    """`alembic upgrade head` against the benchmark database, as its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"alembic upgrade head failed:\n{done.stdout}{done.stderr}")


def flush_redis(url: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def find_wrk(options: Options) -> str | None:
    """The wrk binary, installing it when asked to; None when the Python generator is used."""
    if options.generator == "python":
        return None
    found = shutil.which("wrk")
    if found is None and options.install_tools:
        _apt_install(["wrk"])
        found = shutil.which("wrk")
    if found is None and options.generator == "wrk":
        raise BenchError(
            "wrk is not installed. On Debian/Ubuntu: sudo apt-get update && "
            "sudo apt-get install -y wrk  (or run with --install-tools, or use "
            "--generator python)"
        )
    return found


def _apt_install(packages: list[str]) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", *packages]):
        code = subprocess.run([*prefix, *command], check=False).returncode
        if code != 0:
            raise BenchError(
                f"`{' '.join(prefix + command)}` failed (exit {code}); install it yourself: "
                f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"
            )


def find_py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


def git_commit() -> str:
    """The commit measured, with `+changes` when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "app", "alembic"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' +changes in app/' if dirty else ''}"


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


async def machine(database_url: str, redis_url: str, wrk: str | None) -> dict[str, Any]:
    """What the figures were measured on."""
    conn = await asyncpg.connect(plain_dsn(database_url), timeout=10)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
        pg_settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "max_connections",
                "shared_buffers",
                "synchronous_commit",
                "shared_preload_libraries",
            )
        }
    finally:
        await conn.close()
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        redis_version = str(client.info("server").get("redis_version", "unknown"))
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "redis": redis_version,
        "wrk": _first_line([wrk, "--version"]).split(" [")[0] if wrk else None,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
