"""What a live client is sent when it connects or resyncs: a snapshot of the seat map,
then the changes made since that snapshot, so it misses nothing."""

from app.infra import realtime
from app.infra.cache import EventView, Payload
from app.services import events


async def catch_up(event_id: int) -> tuple[list[bytes], int]:
    """The messages that bring a client up to date, and the last sequence number in them;
    NotFound if the event is not public. Call after subscribing to the event's channel.

    The snapshot is the cached seat map with the live sequence number `seq` read *before*
    its data: every change numbered up to `seq` is in it. The changes numbered after it
    (the map may be up to a second old) are replayed from the channel's log, so 200
    clients connecting at once cost no database read. When the log no longer reaches
    back, the snapshot is read fresh from PostgreSQL instead.
    """
    payload = await events.event_payload(event_id, EventView.SEATS)
    missed = await realtime.changes_since(event_id, _seq(payload))
    if missed is None:
        payload = await events.event_payload(event_id, EventView.SEATS, fresh=True)
        missed = await realtime.changes_since(event_id, _seq(payload)) or []
    last = realtime.seq_of(missed[-1]) if missed else _seq(payload)
    return [_snapshot(payload), *missed], last


def _seq(payload: Payload) -> int:
    return int(payload.meta.split(",")[0])


def _snapshot(payload: Payload) -> bytes:
    """`{type: "snapshot", seq, available, held, booked, event_id, seats}`."""
    seq, available, held, booked = (int(n) for n in payload.meta.split(","))
    head = (
        f'{{"type":"snapshot","seq":{seq},"available":{available},"held":{held},"booked":{booked},'
    )
    return head.encode() + payload.body[1:]
