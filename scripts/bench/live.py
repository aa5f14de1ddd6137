"""Live-channel subscribers (`WS /events/{id}/live`) in a process of their own.

Hundreds of WebSocket clients each receive every seat change; decoding them in the load
generator's event loop would delay the buyers it times. They run in a child process
(spawned), on uvloop, and record when each seat was first named as held by *any*
subscriber and when the *last* one got it (perf_counter, which is CLOCK_MONOTONIC on
Linux: comparable with the parent's times). They also check the channel's contract:
a snapshot first, then changes numbered 1, 2, 3... with no gap (a resync snapshot
restarts the count).

The parent talks to the process through a pipe: the child sends ("ready", facts) once
its subscribers have their snapshots, the parent sends "stop", the child answers
("done", facts).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

CONNECT_CONCURRENCY = 16  # snapshots being built for us at once
CLOSE_S = 2.0  # at the end, for the server's half of the closing handshake
EXAMPLES = 3  # of each kind of anomaly in the numbering
HELD = "held"


@dataclass
class Seen:
    """What all subscribers together saw of the held seats."""

    first: dict[int, float] = field(default_factory=dict)  # seat -> earliest arrival
    last: dict[int, float] = field(default_factory=dict)  # seat -> latest arrival
    count: dict[int, int] = field(default_factory=dict)  # seat -> subscribers that got it

    def add(self, seat_ids: list[int], at: float) -> None:
        for seat in seat_ids:
            if seat not in self.first:
                self.first[seat], self.last[seat], self.count[seat] = at, at, 1
            else:
                self.last[seat] = at
                self.count[seat] += 1


@dataclass
class Tally:
    messages: int = 0
    gaps: int = 0  # change numbers skipped (changes never delivered)
    repeats: int = 0  # a number equal to the previous one
    went_back: int = 0  # a number below the previous one (the numbering restarted?)
    resyncs: int = 0  # snapshots after the first
    closed: dict[str, int] = field(default_factory=dict)  # how subscribers ended early
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few of each anomaly

    def note(self, kind: str, text: str) -> None:
        found = self.examples.setdefault(kind, [])
        if len(found) < EXAMPLES:
            found.append(text)


def _on_message(raw: str | bytes, seq: int, seen: Seen, tally: Tally) -> int:
    """Account for one message; the sequence number the subscriber is now at."""
    at = time.perf_counter()
    message = orjson.loads(raw)
    tally.messages += 1
    number = int(message.get("seq", 0))
    if message.get("type") == "snapshot":
        tally.resyncs += 1
        return number
    if message.get("type") == "seats" and message.get("status") == HELD:
        seen.add([int(s) for s in message.get("seat_ids", ())], at)  # delivered, in order or not
    text = f"{message.get('type')} #{number} after #{seq}"
    if number == seq:
        tally.repeats += 1
        tally.note("repeated", text)
    elif number < seq:
        tally.went_back += 1
        tally.note("going back", text)
    elif number > seq + 1:
        tally.gaps += number - seq - 1
        tally.note("gap", text)
    return max(number, seq)  # the highest number seen: what a client resumes from


async def _subscriber(
    ws: ClientConnection, seq: int, seen: Seen, tally: Tally, stop: asyncio.Event
) -> None:
    try:
        while not stop.is_set():
            seq = _on_message(await ws.recv(), seq, seen, tally)
    except (WebSocketException, OSError) as exc:
        if not stop.is_set():  # the server closed it, or it broke, during the sale
            name = type(exc).__name__
            tally.closed[name] = tally.closed.get(name, 0) + 1


async def _open(url: str, gate: asyncio.Semaphore) -> tuple[ClientConnection, int, float]:
    """One subscriber with its snapshot: (connection, snapshot seq, seconds it took)."""
    async with gate:
        started = time.perf_counter()
        ws = await connect(
            url, max_size=None, ping_interval=None, open_timeout=30, close_timeout=CLOSE_S
        )
        first = orjson.loads(await ws.recv())
        if first.get("type") != "snapshot":
            await ws.close()
            raise ValueError(f"the first message was {first.get('type')!r}, not a snapshot")
        return ws, int(first.get("seq", 0)), time.perf_counter() - started


async def _connect_all(
    url: str, count: int, deadline_s: float
) -> tuple[list[tuple[ClientConnection, int, float]], dict[str, int]]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [asyncio.ensure_future(_open(url, gate)) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    opened, failed = [], {"not connected by the deadline": len(pending)} if pending else {}
    for task in done:
        exc = task.exception()
        if exc is None:
            opened.append(task.result())
        else:
            failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
    return opened, failed


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


async def _main(url: str, count: int, deadline_s: float, pipe: Connection) -> None:
    started = time.perf_counter()
    opened, failed = await _connect_all(url, count, deadline_s)
    times = sorted(t for _, _, t in opened)
    seqs = [s for _, s, _ in opened]
    seen, tally, stop = Seen(), Tally(), asyncio.Event()
    readers = [asyncio.ensure_future(_subscriber(ws, s, seen, tally, stop)) for ws, s, _ in opened]
    pipe.send(
        (
            "ready",
            {
                "connected": len(opened),
                "failed": failed,
                "connect_s": round(time.perf_counter() - started, 2),
                "snapshot_s_median": round(times[len(times) // 2], 3) if times else None,
                "snapshot_s_max": round(times[-1], 3) if times else None,
                "snapshot_seq": [min(seqs), max(seqs)] if seqs else None,
                "open_files": _fds(),
                "cpu_s": time.process_time(),
            },
        )
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    stop.set()
    cpu = time.process_time()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws, _, _ in opened), return_exceptions=True)
    pipe.send(("done", {"seen": seen, "tally": tally, "cpu_s": cpu}))


def run(url: str, count: int, deadline_s: float, pipe: Connection) -> None:
    """The child process's body."""
    uvloop.run(_main(url, count, deadline_s, pipe))


class Subscribers:
    """The parent's handle: start, wait until ready, stop and collect, always clean up."""

    def __init__(self, url: str, count: int, deadline_s: float) -> None:
        assert url.startswith("ws://127.0.0.1:"), url
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=run, args=(url, count, deadline_s, child), name="live-subscribers"
        )
        self.deadline_s = deadline_s
        self.ready: dict[str, Any] = {}
        self.done: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        self.process.start()
        if not self._pipe.poll(self.deadline_s + 60):
            raise TimeoutError("the live subscribers did not get ready")
        kind, self.ready = self._pipe.recv()
        assert kind == "ready", kind
        return self.ready

    def stop(self, timeout_s: float = 60) -> dict[str, Any]:
        """The subscribers' figures ({"error": ...} when they did not answer in time)."""
        self._pipe.send("stop")
        if not self._pipe.poll(timeout_s):
            return {"error": f"the subscribers did not report within {timeout_s:.0f} s"}
        kind, self.done = self._pipe.recv()
        assert kind == "done", kind
        return self.done

    def cpu_seconds(self) -> float:
        """CPU the subscribers used between being ready and being stopped."""
        if "cpu_s" not in self.ready or "cpu_s" not in self.done:
            return 0.0
        return float(self.done["cpu_s"]) - float(self.ready["cpu_s"])

    def close(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


@contextmanager
def subscribers(url: str, count: int, deadline_s: float) -> Iterator[Subscribers]:
    handle = Subscribers(url, count, deadline_s)
    try:
        yield handle
    finally:
        handle.close()
