"""Reading a seat map (`GET /events/{id}/seats`) the way a buyer's screen would, cheaply.

The load generator shares the machine with the server, so a 50,000-seat map (about
5 MB) is never parsed whole per buyer: small maps are parsed once per version (ETag),
big ones only around the place a buyer looks at.
"""

from __future__ import annotations

import random
from collections.abc import Collection

import orjson

FULL_PARSE_BYTES = 1_000_000  # below this, parse the whole map (about 10,000 seats)
WINDOW_SEATS = 60  # what a buyer looks at on a big map: a block around a random spot
AVAILABLE = "available"
_SEATS = b'"seats":['


class MapReader:
    """Free seats of one event's map; parses each version of a small map once."""

    def __init__(self) -> None:
        self._free: dict[bytes, list[int]] = {}

    def choose(
        self,
        body: bytes,
        etag: bytes | None,
        want: int,
        refused: Collection[int],
        rng: random.Random,
    ) -> list[int]:
        """Up to `want` free seats next to each other (by id), none of `refused`."""
        if len(body) <= FULL_PARSE_BYTES:
            free = [s for s in self.free(body, etag) if s not in refused]
            return _block(free, want, rng)
        for _ in range(3):  # a few looks at random places, as a person scrolls
            window = [s for s in _window_free(body, rng.random()) if s not in refused]
            if window:
                return _block(window, want, rng)
        return []

    def free(self, body: bytes, etag: bytes | None) -> list[int]:
        known = self._free.get(etag) if etag else None
        if known is not None:
            return known
        free = sorted(s["id"] for s in orjson.loads(body)["seats"] if s["status"] == AVAILABLE)
        if etag:
            if len(self._free) > 256:
                self._free.clear()
            self._free[etag] = free
        return free


def _block(free: list[int], want: int, rng: random.Random) -> list[int]:
    if not free:
        return []
    start = rng.randrange(len(free))
    start = max(0, min(start, len(free) - want))
    return free[start : start + want]


def _window_free(body: bytes, fraction: float) -> list[int]:
    """Free seat ids among WINDOW_SEATS seat objects starting near `fraction` of the map."""
    head = body.find(_SEATS)
    if head < 0:
        return []
    head += len(_SEATS)
    begin = body.find(b"{", head + int((len(body) - head) * fraction))
    if begin < 0:
        begin = body.find(b"{", head)
    end, last = begin, body.rfind(b"]")  # the seats array ends there: stop before it
    for _ in range(WINDOW_SEATS):
        found = body.find(b"}", end)
        if found < 0 or found > last:
            break
        end = found + 1
    seats = orjson.loads(b"[" + body[begin:end] + b"]") if end > begin else []
    return [s["id"] for s in seats if s.get("status") == AVAILABLE]


def status_of(body: bytes, seat_id: int) -> str | None:
    """The status the map gives one seat (None when it is not in it), without parsing it all."""
    needle = b'"id":%d' % seat_id
    at = body.find(needle)
    while at >= 0 and body[at + len(needle) : at + len(needle) + 1] not in (b",", b"}"):
        at = body.find(needle, at + 1)
    if at < 0:
        return None
    begin, end = body.rfind(b"{", 0, at), body.find(b"}", at)
    if begin < 0 or end < 0:
        return None
    status = orjson.loads(body[begin : end + 1]).get("status")
    return str(status) if status is not None else None
