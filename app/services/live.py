"""What a live client is sent when it connects or resyncs: a snapshot of the seat map,
then the changes made since that snapshot, so it misses nothing."""

from app.infra import realtime
from app.infra.cache import EventView, Payload
from app.services import events

Position = tuple[int, int]  # (epoch, seq): the order changes are applied in


async def catch_up(event_id: int) -> tuple[list[bytes], Position]:
    """The messages that bring a client up to date, and the (epoch, seq) of the last one;
    NotFound if the event is not public. Call after subscribing to the event's channel.

    The snapshot is the cached seat map with the live sequence number `seq` read *before*
    its data: every change numbered up to `seq` is in it. The changes numbered after it
    (the map may be up to a second old) are replayed from the channel's log, so 200
    clients connecting at once cost no database read. When the log no longer reaches
    back, or the map is of an earlier epoch, the snapshot is read fresh from
    PostgreSQL instead. A fresh read that an epoch change overtook gets epoch 0: the
    client's next change is then of another epoch, which makes it resync.
    """
    payload = await events.event_payload(event_id, EventView.SEATS)
    since = await realtime.changes_since(event_id, _seq(payload))
    if since is None or not _of_epoch(payload, since.epoch):
        before = await realtime.current_epoch(event_id)
        payload = await events.event_payload(event_id, EventView.SEATS, fresh=True)
        since = await realtime.changes_since(event_id, _seq(payload))
        if since is None or before != since.epoch:
            return [_snapshot(payload, 0)], (0, _seq(payload))
    last = realtime.seq_of(since.changes[-1]) if since.changes else _seq(payload)
    return [_snapshot(payload, since.epoch), *since.changes], (since.epoch, last)


def _of_epoch(payload: Payload, epoch: int) -> bool:
    """Whether a cached map's sequence number surely belongs to `epoch`.

    No epoch (0) means Redis holds no numbering for the event (it restarted, or nothing
    was ever announced): read fresh. A map numbered 0 in an epoch was built while Redis
    was unreachable (its number is the fallback) and stored once it was back: its data
    may predate changes made meanwhile, which no message carries. Only a build in flight
    across a whole outage could store an earlier epoch's number; reading the epoch with
    the number into the map's header (`events._build`) would close that too.
    """
    return epoch != 0 and _seq(payload) > 0


def _seq(payload: Payload) -> int:
    return int(payload.meta.split(",")[0])


def _snapshot(payload: Payload, epoch: int) -> bytes:
    """`{type: "snapshot", seq, epoch, available, held, booked, event_id, seats}`."""
    seq, available, held, booked = (int(n) for n in payload.meta.split(",")[:4])
    head = (
        f'{{"type":"snapshot","seq":{seq},"epoch":{epoch},'
        f'"available":{available},"held":{held},"booked":{booked},'
    )
    return head.encode() + payload.body[1:]
