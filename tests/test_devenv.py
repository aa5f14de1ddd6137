"""scripts/devenv.py: the embedded servers for real, and how database URLs are read."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.devenv import DevEnvError, normalise_database_url

ROOT = Path(__file__).resolve().parent.parent
DEVENV = [sys.executable, "-m", "scripts.devenv"]

# Runs under `devenv exec` with the data folder as working directory.
PROBE = """
import asyncio, json, os, sys
import asyncpg, redis

async def database(statements):
    conn = await asyncpg.connect(os.environ["DATABASE_URL"].replace("+asyncpg", "", 1))
    try:
        for statement in statements[:-1]:
            await conn.execute(statement)
        return await conn.fetchval(statements[-1])
    finally:
        await conn.close()

if sys.argv[1] == "write":
    stored = asyncio.run(database(["create table kept (n int)", "insert into kept values (42)",
                                   "show server_version"]))
else:
    stored = asyncio.run(database(["select n from kept"]))
with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
    runs = client.incr("runs")
    redis_pid = client.info("server")["process_id"]
with open("postgres/postmaster.pid") as pid_file:
    postgres_pid = int(pid_file.readline())
print(json.dumps({"stored": stored, "runs": runs, "pids": [postgres_pid, redis_pid]}))
sys.exit(7)
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not tmp_path: pytest keeps its base folder private (0700), and as root the embedded
    # PostgreSQL runs as an unprivileged account that must be able to reach its data.
    path = Path(tempfile.mkdtemp(prefix="evently-devenv-"))
    path.chmod(0o755)
    yield path
    # Only does something when a test failed half-way and left a server running.
    subprocess.run([*DEVENV, "stop", "--data-dir", str(path)], env=_env(), capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    # conftest exports the test servers' URLs; unset, devenv must find its own.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"EVENTLY_FORCE_EMBEDDED": "1", "PYTHONPATH": str(ROOT)}


def _exec_probe(
    data_dir: Path, mode: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    command = [*DEVENV, "exec", "--data-dir", str(data_dir), "--"]
    done = subprocess.run(
        [*command, sys.executable, "-c", PROBE, mode],
        cwd=data_dir, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def _gone(pid: int) -> bool:
    """True when pid no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


@pytest.mark.slow
class TestEmbeddedServers:
    def test_start_answer_and_stop_without_leftovers(self, data_dir: Path) -> None:
        done, seen = _exec_probe(data_dir, "write")

        assert done.returncode == 7  # the command's own exit code
        assert seen["stored"].startswith("18")
        assert "started embedded PostgreSQL 18" in done.stderr
        assert "started embedded Valkey" in done.stderr
        assert all(_gone(pid) for pid in seen["pids"])
        processes = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True)
        running = [line for line in processes.stdout.splitlines() if not line.startswith("Z")]
        assert not [line for line in running if str(data_dir) in line]

    def test_data_survives_a_restart(self, data_dir: Path) -> None:
        _exec_probe(data_dir, "write")

        done, seen = _exec_probe(data_dir, "read")

        assert done.returncode == 7
        assert seen["stored"] == 42
        assert seen["runs"] == 2


class TestNormaliseDatabaseUrl:
    @pytest.mark.parametrize(
        "raw",
        [
            "postgresql://u:p@db:5432/evently",
            "postgres://u:p@db:5432/evently",
            "postgresql+psycopg://u:p@db:5432/evently",
            "postgresql+asyncpg://u:p@db:5432/evently",
        ],
    )
    def test_any_postgres_spelling_becomes_asyncpg(self, raw: str) -> None:
        url = normalise_database_url(raw)

        assert url.render_as_string(hide_password=False) == (
            "postgresql+asyncpg://u:p@db:5432/evently"
        )

    def test_other_databases_are_refused_with_advice(self) -> None:
        with pytest.raises(DevEnvError, match=r"postgresql://"):
            normalise_database_url("mysql://u:p@db/evently")
