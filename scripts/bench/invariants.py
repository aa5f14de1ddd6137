"""The booking invariants of DESIGN §4, checked in PostgreSQL after a booking scenario."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]  # it ships no type hints

ACTIVE = "('pending', 'confirmed')"

# A seat claimed by two active bookings (the headline invariant).
DOUBLE_CLAIMS = f"""
SELECT bs.seat_id, array_agg(b.id ORDER BY b.id) AS bookings
FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
WHERE b.status IN {ACTIVE}
GROUP BY bs.seat_id HAVING count(*) > 1
LIMIT 20
"""

# Booked + held above capacity, counted both from the seats and from the active claims.
OVER_CAPACITY = f"""
SELECT e.id, e.total_capacity,
       (SELECT count(*) FROM seats s
         WHERE s.event_id = e.id AND s.status IN ('held', 'booked')) AS taken,
       (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
         WHERE b.event_id = e.id AND b.status IN {ACTIVE}) AS claimed
FROM events e WHERE e.id = ANY($1::int[])
"""

# An active booking whose seats do not all point back at it in the right state
# (a half-held booking), or a taken seat that no active booking claims.
DISAGREEMENTS = f"""
SELECT 'booking ' || b.id || ' claims seat ' || s.id || ' which is ' || s.status
       || ' for booking ' || coalesce(s.booking_id::text, 'none')
FROM bookings b
JOIN booking_seats bs ON bs.booking_id = b.id
JOIN seats s ON s.id = bs.seat_id
WHERE b.event_id = ANY($1::int[]) AND b.status IN {ACTIVE}
  AND (s.booking_id IS DISTINCT FROM b.id OR NOT bs.active
       OR s.status <> CASE b.status WHEN 'confirmed' THEN 'booked' ELSE 'held' END)
UNION ALL
SELECT 'seat ' || s.id || ' is ' || s.status || ' for booking '
       || coalesce(s.booking_id::text, 'none') || ', which is not active or has no claim on it'
FROM seats s
LEFT JOIN bookings b ON b.id = s.booking_id AND b.status IN {ACTIVE}
LEFT JOIN booking_seats bs ON bs.booking_id = b.id AND bs.seat_id = s.id AND bs.active
WHERE s.event_id = ANY($1::int[]) AND s.status IN ('held', 'booked') AND bs.seat_id IS NULL
LIMIT 20
"""


@dataclass(frozen=True)
class Taken:
    event_id: int
    capacity: int
    taken: int  # seats held or booked
    claimed: int  # seats in active bookings


async def check(dsn: str, event_ids: Sequence[int]) -> tuple[list[str], list[Taken]]:
    """(violations, per-event counts) for these events (double claims: database-wide)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        doubles = await conn.fetch(DOUBLE_CLAIMS)
        counts = [Taken(*row) for row in await conn.fetch(OVER_CAPACITY, list(event_ids))]
        disagreements = [row[0] for row in await conn.fetch(DISAGREEMENTS, list(event_ids))]
    finally:
        await conn.close()
    found = [f"seat {r['seat_id']} is in active bookings {list(r['bookings'])}" for r in doubles]
    for c in counts:
        if c.taken > c.capacity or c.claimed > c.capacity:
            found.append(
                f"event {c.event_id}: {c.taken} seats taken and {c.claimed} claimed, "
                f"capacity {c.capacity}"
            )
        if c.taken != c.claimed:
            found.append(
                f"event {c.event_id}: {c.taken} seats are taken but active bookings claim "
                f"{c.claimed}"
            )
    return found + disagreements, counts
