"""Snapshots for live clients: the seat map with counts and the sequence it reflects."""

import orjson

from app.core.db import unit_of_work
from app.infra import realtime
from app.services import events


async def snapshot(event_id: int) -> bytes:
    """`{type: "snapshot", seq, available, held, booked, seats}`; NotFound if not public.

    The sequence number is read *before* the database, so every change numbered up to
    it is already in the seats; later messages may repeat a change, never miss one.
    """
    seq = await realtime.current_seq(event_id)
    async with unit_of_work() as uow:
        seat_map = await events.seat_map(uow, event_id)
    counts = {"available": 0, "held": 0, "booked": 0}
    for seat in seat_map.seats:
        counts[seat.status.value] += 1
    return orjson.dumps(
        {
            "type": "snapshot",
            "event_id": event_id,
            "seq": seq,
            **counts,
            "seats": [s.model_dump(mode="json") for s in seat_map.seats],
        }
    )
