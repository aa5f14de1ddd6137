"""The API as it would run in production: uvicorn, uvloop, httptools, N workers, no reload.

The server runs in a session (process group) of its own, so Ctrl-C in the terminal does
not reach it half-way; `stop()` ends the whole group, and it is always called (the
caller uses this as a context manager inside a `finally` that also handles SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from scripts.bench.environment import BenchError
from scripts.bench.options import ROOT

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def server_command(port: int, workers: int, app: str = "app.main:app") -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "30",  # the load generator keeps its connections between phases
    ]


class Server:
    def __init__(
        self,
        env: dict[str, str],
        port: int,
        workers: int,
        log_path: Path,
        app: str = "app.main:app",
    ) -> None:
        self.env = env
        self.port = port
        self.workers = workers
        self.app = app
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                server_command(self.port, self.workers, self.app),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise BenchError(f"the API exited during start-up; see {self.log_path}")
            if len(self.worker_pids()) >= self.workers and self._healthy():
                return
            time.sleep(0.1)
        raise BenchError(f"the API did not become ready in {STARTUP_TIMEOUT_S:.0f} s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def pids(self) -> list[int]:
        """The uvicorn supervisor and its workers."""
        if self.process is None:
            return []
        workers = [p for p in self.worker_pids() if p != self.process.pid]
        return [self.process.pid, *workers]

    def worker_pids(self) -> list[int]:
        """The processes serving requests (with one worker, uvicorn serves in-process)."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return _children(self.process.pid)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_events(self, since: int) -> dict[str, int]:
        """Warnings and errors the API logged after byte `since`, counted by event."""
        counted: dict[str, int] = {}
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return counted
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                level = str(entry.get("level", "?"))
                if level in ("debug", "info"):
                    continue
                key = f"{level}: {entry.get('event', '?')}"
            elif line.strip():
                key = "unstructured lines (tracebacks?)"
            else:
                continue
            counted[key] = counted.get(key, 0) + 1
        return counted

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        try:  # anything left in the group (a worker that ignored SIGTERM)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"warning: uvicorn (pid {process.pid}) did not exit", file=sys.stderr)


def _children(pid: int) -> list[int]:
    """Direct children running Python (uvicorn's workers), from /proc."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    workers = []
    for child in found:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:  # not multiprocessing's resource tracker
            workers.append(child)
    return sorted(workers)
