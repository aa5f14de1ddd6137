"""Snapshots for live clients: the seat map with counts and the sequence it reflects."""

from app.infra.cache import EventView
from app.services import events


async def snapshot(event_id: int) -> bytes:
    """`{type: "snapshot", seq, available, held, booked, event_id, seats}`; NotFound if
    the event is not public.

    It is the cached seat map (rebuilt if need be) with the live sequence number read
    *before* its data: every change numbered up to `seq` is already in the seats, later
    messages may repeat a change but never miss one. So a stale map is still a correct
    snapshot, and 200 clients connecting at once cost no database read.
    """
    payload = await events.event_payload(event_id, EventView.SEATS)
    seq, available, held, booked = (int(n) for n in payload.meta.split(","))
    head = (
        f'{{"type":"snapshot","seq":{seq},"available":{available},"held":{held},"booked":{booked},'
    )
    return head.encode() + payload.body[1:]
