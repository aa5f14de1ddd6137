"""Running child processes so that signals reach them and we still get to clean up."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
