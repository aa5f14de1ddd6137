"""A short run of the benchmark harness (`make bench`), so that it cannot rot.

The harness runs as a real process against the servers the suite uses, with the
original DATABASE_URL / REDIS_URL (not the test database): it creates its own database
(`evently_bench_smoke`, or `<EVENTLY_TEST_DATABASE>_bench`, so a `make bench` running
meanwhile is not disturbed) and uses Redis database 13. It starts uvicorn with two
workers, seeds, runs scenarios in `--quick` mode and checks the invariants; here we check
what it reported.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_DATABASE_URL, BASE_REDIS_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Settings conftest sets for the in-process app; the harness chooses its own.
TEST_ONLY = (
    "APP_ENV",
    "SECRET_KEY",
    "LOG_JSON",
    "LOG_LEVEL",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "BCRYPT_ROUNDS",
)
GENERATORS = ["python", "wrk"]
ON_SALE = ("onsale", "stadium", "login-rush")

# Its own database, named after the test database when that is set, so two test runs on
# one machine do not seed each other's benchmark.
SMOKE_DATABASE = (
    os.environ["EVENTLY_TEST_DATABASE"] + "_bench"
    if os.environ.get("EVENTLY_TEST_DATABASE")
    else "evently_bench_smoke"
)
SMOKE_REDIS_DB = os.environ.get("EVENTLY_TEST_BENCH_REDIS_DB", "13")


def run_bench(
    results: Path, generator: str, only: str = "read-cached,hot-event"
) -> tuple[subprocess.CompletedProcess[str], Any]:
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY}
    env.update(DATABASE_URL=BASE_DATABASE_URL, REDIS_URL=BASE_REDIS_URL)
    command = [
        sys.executable,
        "-m",
        "scripts.bench",
        "--quick",
        "--only",
        only,
        "--generator",
        generator,
        "--database",
        SMOKE_DATABASE,
        "--redis-db",
        SMOKE_REDIS_DB,
        "--results-dir",
        str(results),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    report = json.loads((results / "latest.json").read_text()) if done.returncode == 0 else None
    return done, report


@pytest.mark.parametrize("generator", GENERATORS)
def test_quick_run_reports_and_keeps_the_invariants(tmp_path: Path, generator: str) -> None:
    if generator == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk); the python generator ran")
    done, report = run_bench(tmp_path, generator)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "read-cached" in done.stdout
    assert "hot-event" in done.stdout  # the table
    assert (tmp_path / "latest.md").read_text().startswith("# Evently benchmark")

    results = {r["scenario"]: r for r in report["results"]}
    assert set(results) == {"read-cached", "hot-event"}
    assert report["options"]["generator"] == generator
    for name, result in results.items():
        assert result["problems"] == [], (name, result["problems"])
        assert result["transport_errors"] == {}, (name, result["transport_errors"])
        assert all(int(status) < 500 for status in result["statuses"]), (name, result)

    cached = results["read-cached"]
    assert cached["details"]["facts"]["X-Cache after warm-up"] == "hit"
    assert cached["throughput"] > 0
    assert set(cached["statuses"]) == {"200"}

    hot = results["hot-event"]
    seats = report["sizes"]["hot_seats"]
    assert hot["details"]["facts"]["sold (201s)"] == seats
    assert hot["details"]["facts"]["taken in the database"] == seats
    assert hot["details"]["facts"]["invariants"] == "ok"
    assert set(hot["statuses"]) <= {"201", "409"}


@pytest.mark.parametrize("generator", GENERATORS)
def test_quick_on_sale_scenarios_report_and_keep_the_invariants(
    tmp_path: Path, generator: str
) -> None:
    if generator == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk); the python generator ran")
    done, report = run_bench(tmp_path, generator, ",".join(ON_SALE))
    assert done.returncode == 0, done.stdout + done.stderr

    results = {r["scenario"]: r for r in report["results"]}
    assert set(results) == set(ON_SALE)
    for name, result in results.items():
        assert result["problems"] == [], (name, result["problems"])
        assert result["details"]["facts"]["invariants"] == "ok", name
        # A 503 is the overload policy's answer on a busy machine; anything else is a bug.
        errors = {s for s in map(int, result["statuses"]) if s >= 500 and s != 503}
        assert not errors, (name, result["statuses"])

    sale = results["onsale"]["details"]["facts"]
    assert 0 < sale["seats held"] <= report["sizes"]["onsale_seats"]
    assert sale["live channel"].startswith(f"{report['sizes']['subscribers']} connected")

    stadium = results["stadium"]["details"]["facts"]
    assert any(key.startswith("uncached map ms") for key in stadium), stadium
    assert results["stadium"]["throughput"] > 0  # the flash's holds/s

    logins = results["login-rush"]["details"]["facts"]["logins"]
    assert logins["200"] + logins["429"] + logins["503"] == report["sizes"]["login_users"]
