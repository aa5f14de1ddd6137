"""The invariants of DESIGN §4 as SQL: each query returns the rows that break one.

Used after every step of the model-based test (tests/test_model.py) and on a database
restored from a backup (tests/test_backup.py). They read only the database, so they hold
whatever the API said: a row returned here is a broken promise.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Claims that count: a pending (even lapsed, until released) or confirmed booking's.
_ACTIVE = "b.status IN ('pending', 'confirmed')"

CHECKS: dict[str, str] = {
    "a seat is in two active bookings": f"""
        SELECT bs.seat_id, array_agg(b.id ORDER BY b.id)
        FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
        WHERE bs.active AND {_ACTIVE}
        GROUP BY bs.seat_id HAVING count(*) > 1""",
    "an active claim of a booking that has ended": """
        SELECT bs.booking_id, bs.seat_id, b.status
        FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
        WHERE bs.active AND b.status NOT IN ('pending', 'confirmed')""",
    "a pending or confirmed booking without seats": f"""
        SELECT b.id, b.status FROM bookings b
        WHERE {_ACTIVE} AND NOT EXISTS (
            SELECT 1 FROM booking_seats bs WHERE bs.booking_id = b.id AND bs.active)""",
    "a booking half-held (a claimed seat not marked as the booking's)": f"""
        SELECT b.id, b.status, s.id, s.status, s.booking_id
        FROM bookings b
        JOIN booking_seats bs ON bs.booking_id = b.id AND bs.active
        JOIN seats s ON s.id = bs.seat_id
        WHERE {_ACTIVE} AND (
            s.booking_id IS DISTINCT FROM b.id
            OR s.event_id <> b.event_id
            OR s.status::text <> CASE b.status WHEN 'pending' THEN 'held' ELSE 'booked' END
            OR (b.status = 'pending' AND s.held_until IS DISTINCT FROM b.expires_at)
            OR (b.status = 'confirmed' AND s.held_until IS NOT NULL))""",
    "a seat held or booked for no live booking": """
        SELECT s.id, s.status, s.booking_id FROM seats s
        WHERE s.status <> 'available' AND NOT EXISTS (
            SELECT 1 FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
            WHERE bs.seat_id = s.id AND bs.booking_id = s.booking_id AND bs.active
              AND b.status::text
                  = CASE s.status WHEN 'held' THEN 'pending' ELSE 'confirmed' END)""",
    "an available seat still pointing at a booking": """
        SELECT s.id, s.booking_id, s.held_until FROM seats s
        WHERE s.status = 'available' AND (s.booking_id IS NOT NULL OR s.held_until IS NOT NULL)""",
    "an event whose seats do not add up to its capacity": """
        SELECT e.id, e.total_capacity, count(s.id) FROM events e
        LEFT JOIN seats s ON s.event_id = e.id
        GROUP BY e.id HAVING count(s.id) <> e.total_capacity""",
    "a user over the per-event seat cap": """
        SELECT b.user_id, b.event_id, count(*) FROM booking_seats bs
        JOIN bookings b ON b.id = bs.booking_id
        WHERE bs.active AND (b.status = 'confirmed'
            OR (b.status = 'pending' AND b.expires_at > now()))
        GROUP BY b.user_id, b.event_id HAVING count(*) > :cap""",
    "a booking whose total is not the sum of its seats": """
        SELECT b.id, b.total_cents, sum(bs.price_cents) FROM bookings b
        JOIN booking_seats bs ON bs.booking_id = b.id
        GROUP BY b.id HAVING b.total_cents <> sum(bs.price_cents)""",
    "a confirmed booking without a ticket for each of its seats": """
        SELECT b.id, bs.seat_id FROM bookings b
        JOIN booking_seats bs ON bs.booking_id = b.id AND bs.active
        WHERE b.status = 'confirmed' AND (
            SELECT count(*) FROM tickets t
            WHERE t.booking_id = b.id AND t.seat_id = bs.seat_id) <> 1""",
    "a ticket of a booking never confirmed, or for a seat it never claimed": """
        SELECT t.id, t.booking_id, t.seat_id FROM tickets t
        JOIN bookings b ON b.id = t.booking_id
        WHERE b.confirmed_at IS NULL OR NOT EXISTS (
            SELECT 1 FROM booking_seats bs
            WHERE bs.booking_id = t.booking_id AND bs.seat_id = t.seat_id)""",
    "a waitlist offer that does not hold its seats": """
        SELECT w.id, w.status, b.id, b.status, b.source FROM waitlist_entries w
        LEFT JOIN bookings b ON b.id = w.offered_booking_id
        WHERE (w.status = 'offered' AND (b.id IS NULL OR b.status <> 'pending'
                OR b.source <> 'waitlist' OR b.user_id <> w.user_id
                OR b.event_id <> w.event_id
                OR (SELECT count(*) FROM booking_seats bs
                    WHERE bs.booking_id = b.id AND bs.active) <> w.quantity))
           OR (w.status = 'fulfilled' AND (b.id IS NULL OR b.status <> 'confirmed'))
           OR (w.status = 'waiting' AND w.offered_booking_id IS NOT NULL)""",
    "a waitlist booking that no entry offered": """
        SELECT b.id FROM bookings b WHERE b.source = 'waitlist' AND NOT EXISTS (
            SELECT 1 FROM waitlist_entries w WHERE w.offered_booking_id = b.id)""",
    "a waiting entry left waiting beside enough available seats": """
        SELECT w.id, w.quantity, (SELECT count(*) FROM seats s
            WHERE s.event_id = w.event_id AND s.status = 'available') AS available
        FROM waitlist_entries w
        JOIN events e ON e.id = w.event_id AND e.status = 'published'
        WHERE w.status = 'waiting' AND w.quantity <= (SELECT count(*) FROM seats s
            WHERE s.event_id = w.event_id AND s.status = 'available')""",
}


def _union() -> str:
    """All the checks in one statement (one round trip after every step of the model)."""
    parts = [
        f"SELECT {i} AS check, row_to_json(r)::text AS found FROM ({sql}) r"
        for i, sql in enumerate(CHECKS.values())
    ]
    return "\nUNION ALL\n".join(parts)


ALL_CHECKS = text(_union())
NAMES = list(CHECKS)


async def violations(conn: AsyncConnection, cap: int) -> list[str]:
    """Every broken invariant, one line per offending row (empty when all hold)."""
    rows = (await conn.execute(ALL_CHECKS, {"cap": cap})).all()
    return [f"{NAMES[check]}: {found}" for check, found in rows]
