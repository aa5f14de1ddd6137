"""`WS /events/{id}/live`: a snapshot, then one message per committed seat change."""

import asyncio
import contextlib

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.exc import DBAPIError

from app.core.errors import DomainError, NotFound
from app.core.redis import REDIS_ERRORS
from app.infra import realtime
from app.infra.realtime import hub
from app.services import live as service

router = APIRouter(tags=["live"])

CLOSE_UNKNOWN_EVENT = 4404
CLOSE_TRY_LATER = 1013
_DISCONNECTED = b"__disconnected__"


@router.websocket("/events/{event_id}/live")
async def live(websocket: WebSocket, event_id: int) -> None:
    """Send `{type: "snapshot", epoch, seq, ...}`, then `{type: "seats", epoch, seq, ...}`
    per change (and `{type: "event", ...}` when the event's status changes; a
    `{type: "resync"}` of a new epoch follows a change that could not be announced).

    The client's rule: keep the (epoch, seq) of the last snapshot or change applied. A
    snapshot replaces everything held. Apply a change only if its epoch is the one held and
    its seq is one more; ignore one with the same epoch and a seq not above the held one
    (already in the snapshot). Anything else (another epoch: Redis lost the numbering and
    started again; a seq that jumps) means changes were missed: send `{"type": "resync"}`
    and apply nothing until the snapshot it brings. The server keeps to the same rule: it
    never forwards a change that does not follow what it sent, it sends a fresh snapshot
    instead, as it does after it lost Redis or when a client falls behind.
    """
    await websocket.accept()
    try:
        # Subscribe first: every change published from now on reaches this client, and
        # the catch-up covers everything before.
        queue = await hub.subscribe(event_id)
    except REDIS_ERRORS:
        await websocket.close(code=CLOSE_TRY_LATER, reason="live updates are unavailable right now")
        return
    listener = asyncio.create_task(_listen(websocket, queue))
    try:
        await _stream(websocket, event_id, queue)
    except NotFound as exc:
        await websocket.close(code=CLOSE_UNKNOWN_EVENT, reason=exc.detail[:120])
    except (DomainError, DBAPIError):  # overloaded or database unavailable: try later
        await websocket.close(code=CLOSE_TRY_LATER, reason="live updates are busy; reconnect")
    except WebSocketDisconnect:
        pass
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await hub.unsubscribe(event_id, queue)


async def _stream(
    websocket: WebSocket, event_id: int, queue: "asyncio.Queue[bytes | None]"
) -> None:
    seen = await _catch_up(websocket, event_id)
    while True:
        data = await queue.get()
        if data == _DISCONNECTED:
            return
        if data is None:  # fell behind, lost Redis, or asked for it
            seen = await _catch_up(websocket, event_id)
            continue
        epoch, seq = realtime.position_of(data)
        if epoch == seen[0] and seq <= seen[1]:
            continue  # already in the snapshot or the replay
        if (epoch, seq) != (seen[0], seen[1] + 1):  # a new epoch or a gap: never forward it
            seen = await _catch_up(websocket, event_id)
            continue
        await websocket.send_text(data.decode())
        seen = (epoch, seq)


async def _catch_up(websocket: WebSocket, event_id: int) -> service.Position:
    messages, seen = await service.catch_up(event_id)
    for message in messages:
        await websocket.send_text(message.decode())
    return seen


async def _listen(websocket: WebSocket, queue: "asyncio.Queue[bytes | None]") -> None:
    """Client messages: `{"type": "resync"}` asks for a fresh snapshot."""
    try:
        while True:
            text = await websocket.receive_text()
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                if orjson.loads(text).get("type") == "resync":
                    await queue.put(None)
    except (WebSocketDisconnect, RuntimeError):
        await queue.put(_DISCONNECTED)
