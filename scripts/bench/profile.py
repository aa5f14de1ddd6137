"""`--profile`: py-spy records the API workers during a scenario; top functions summarised.

py-spy samples the on-CPU Python stacks (idle threads are left out) of the uvicorn
supervisor and its workers (`--subprocesses`), without pausing them (`--nonblocking`).
The raw collapsed stacks are kept next to the results; the summary lists the functions
with the most samples on top of the stack (self) and anywhere in it (inclusive).
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 250
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# With --subprocesses each stack starts with `process PID:"command line"` frames (the
# supervisor's, then the worker's); command lines may contain ';'.
_PROCESS = re.compile(r'^(?:process (\d+):"[^"]*"(?:;|$))+')


class Profiler:
    def __init__(self, py_spy: str, pid: int, output: Path) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        self.command = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--output",
            str(output),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> dict[str, Any]:
        process, self.process = self.process, None
        if process is None:
            return {}
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if not self.output.exists():
            return {"error": f"py-spy wrote nothing; see {self.log}"}
        return summarise(self.output)


def _short(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `function (to/file.py)`, lines merged."""
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    path = found.group("file")
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found.group('func')} ({path})"


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    app: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        process = _PROCESS.match(stack)
        if process is not None:
            processes[process.group(1)] += count  # the innermost: the worker
            stack = stack[process.end() :]
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        app_frames = [f for f in frames if "(app/" in f]
        if app_frames:
            app[app_frames[-1]] += count  # the innermost application frame
    if not total:
        return {"samples": 0}

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(n / total, 3)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "samples_by_pid": dict(processes.most_common()),
        "self": shares(own),
        "inclusive": shares(inclusive),
        "innermost_app_frame": shares(app),
    }
