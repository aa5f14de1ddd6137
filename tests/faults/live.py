"""A live-channel client that follows the documented rule (`app.api.routes.live`), for the
fault tests: it keeps the seat map a snapshot gave it, applies each change only when it
comes next (same epoch, seq one more), and asks for a resync at anything else.

If the server ever lets changes go missing without the client being able to tell (a
"silent gap"), this client ends with a seat map that differs from the database: the
tests compare the two once the storm is over.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from websockets.asyncio.client import ClientConnection

from app.core.db import db


@dataclass
class LiveFollower:
    ws: ClientConnection
    seats: dict[int, str] = field(default_factory=dict)
    epoch: int = 0
    seq: int = -1
    waiting: bool = True  # for a snapshot: changes are not applied meanwhile
    snapshots: list[float] = field(default_factory=list)  # when each one arrived
    gaps: list[tuple[float, str]] = field(default_factory=list)  # when, and what was seen
    applied: int = 0
    duplicates: int = 0
    last_message_at: float = 0.0

    async def run(self) -> None:
        """Read until the connection closes (cancel the task to stop)."""
        async for raw in self.ws:
            self.last_message_at = time.monotonic()
            if not self.on_message(json.loads(raw)):
                await self.ws.send(json.dumps({"type": "resync"}))

    def on_message(self, message: dict[str, Any]) -> bool:
        """Apply one message; False when it revealed a gap (a resync is needed)."""
        position = (int(message.get("epoch", 0)), int(message["seq"]))
        if message["type"] == "snapshot":
            self.seats = {s["id"]: s["status"] for s in message["seats"]}
            self.epoch, self.seq = position
            self.waiting = False
            self.snapshots.append(time.monotonic())
            return True
        if self.waiting:
            return True
        if position[0] == self.epoch and position[1] <= self.seq:
            self.duplicates += 1  # already in the snapshot or applied
            return True
        if position != (self.epoch, self.seq + 1):
            self.gaps.append((time.monotonic(), f"{(self.epoch, self.seq)} -> {position}"))
            self.waiting = True
            return False
        self.epoch, self.seq = position
        if message["type"] == "seats":
            for seat_id in message["seat_ids"]:
                self.seats[seat_id] = message["status"]
        self.applied += 1
        return True

    async def first_snapshot(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not self.snapshots:
            if time.monotonic() > deadline:
                raise AssertionError("no snapshot from the live channel")
            await asyncio.sleep(0.02)

    def resynced_since(self, moment: float) -> bool:
        return any(at >= moment for at in self.snapshots)


async def seats_in_database(event_id: int) -> dict[int, str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, status FROM seats WHERE event_id = :e"), {"e": event_id}
        )
        return {seat_id: str(status) for seat_id, status in rows.all()}


async def converges(follower: LiveFollower, event_id: int, within: float) -> float | None:
    """Seconds until the follower's seat map equals the database's (None: it never did)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if not follower.waiting and follower.seats == await seats_in_database(event_id):
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


def differences(follower: LiveFollower, truth: dict[int, str]) -> dict[int, tuple[str, str]]:
    """seat id -> (what the client believes, what the database holds), where they differ."""
    return {
        s: (follower.seats.get(s, "?"), status)
        for s, status in truth.items()
        if follower.seats.get(s) != status
    }
