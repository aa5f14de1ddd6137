"""`make run`: the whole system on one machine.

Finds or starts PostgreSQL and Redis (see scripts/devenv.py), migrates the database,
seeds the demo data, then runs every process of the Procfile with honcho until Ctrl-C,
after which it stops what it started, embedded servers included.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer
from sqlalchemy.engine import make_url

from scripts.devenv import DATA_DIR, Services, child_env, run_with_services, setting
from scripts.processes import fresh_metrics_dir

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
DEMO_PASSWORD = "evently-demo"
DEMO_LOGINS = ("admin@example.com", "organizer@example.com", "customer@example.com")


def main() -> int:
    port = setting("PORT") or "8000"
    if not port.isdigit():
        print(f"PORT must be a number, not {port!r}", file=sys.stderr)
        return 2
    return run_with_services(lambda services: _run(services, int(port)), DATA_DIR, "evently")


def _run(services: Services, port: int) -> int:
    extra = {"APP_ENV": "development", "PORT": str(port)}
    if setting("LOG_JSON") is None:
        extra["LOG_JSON"] = "false"  # honcho pipes the output, which would otherwise mean JSON
    metrics_dir, temporary = fresh_metrics_dir(setting("METRICS_DIR"))
    extra["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # every process counts there
    env = child_env(services, **extra)
    (ROOT / DATA_DIR).mkdir(exist_ok=True)  # celery beat keeps its schedule state there
    try:
        for step in (["alembic", "upgrade", "head"], ["app.cli", "seed-demo"]):
            code = _step(step, env)
            if code != 0:
                return code
        _banner(services, port)
        return _start_procfile(env, port)
    finally:
        if temporary:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _step(command: list[str], env: dict[str, str]) -> int:
    """Run `python -m COMMAND` in the repository; say so when it fails."""
    argv = [sys.executable, "-m", *command]
    code = subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode
    if code != 0:
        print(f"`python -m {' '.join(command)}` failed (exit {code}); stopping", file=sys.stderr)
    return code


def _banner(services: Services, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    lines = [
        "",
        "Evently is starting (Ctrl-C stops everything started here)",
        f"  API         {base}",
        f"  Swagger UI  {base}/docs",
        f"  Metrics     {base}/metrics  (Prometheus)",
        "  Flower      http://127.0.0.1:5555  (Celery tasks: worker, beat)",
        f"  Demo logins {', '.join(DEMO_LOGINS)}",
        f"              password: {DEMO_PASSWORD}",
        f"  PostgreSQL  {_hidden(services.database_url)}",
        f"  Redis       {_hidden(services.redis_url)}",
        "",
    ]
    print("\n".join(lines), flush=True)


def _hidden(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _start_procfile(env: dict[str, str], port: int) -> int:
    """Run the Procfile's processes until one exits or we are told to stop."""
    processes = parse_procfile(PROCFILE.read_text()).processes
    manager = Manager(Printer(sys.stdout))
    # honcho gives each process type its own PORT: the first gets `port`, the next +100.
    for process in expand_processes(processes, port=port):
        manager.add_process(process.name, process.cmd, env={**env, **process.env}, cwd=str(ROOT))
    # honcho handles SIGINT and SIGTERM itself; a closed terminal should stop us the same way.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: manager.terminate())
    manager.loop()
    return int(manager.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
