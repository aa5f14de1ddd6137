"""Running child processes so that signals reach them and we still get to clean up."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A signal handler that unwinds like Ctrl-C, so `finally` blocks still run."""
    del signum, frame
    raise KeyboardInterrupt


@contextmanager
def signals(handler: Any, *signums: int) -> Iterator[None]:
    """Handle `signums` with `handler` inside the block, as before outside it."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Run a command to completion and return its exit code (128 + N when killed by signal N)."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"devenv: cannot run {shlex.join(command)}: {exc}", file=sys.stderr)
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        child.send_signal(signum)

    # Ctrl-C already reaches the child (same process group), so we only wait for it to end.
    with signals(signal.SIG_IGN, signal.SIGINT), signals(forward, signal.SIGTERM, signal.SIGHUP):
        code = child.wait()
    return 128 - code if code < 0 else code


def fresh_metrics_dir(configured: str | None) -> tuple[Path, bool]:
    """The PROMETHEUS_MULTIPROC_DIR of a run, emptied of the last run's files: METRICS_DIR
    when set (created if missing), else a new temporary folder. Returns it and whether it
    is temporary (the caller removes it at the end). Set before the processes start, so
    every API and Celery worker writes there and a scrape adds them all up."""
    if not configured:
        return Path(tempfile.mkdtemp(prefix="evently-metrics-")), True
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # counters of a previous run would be added in
        stale.unlink()
    return folder, False
