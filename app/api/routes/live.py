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
    """Send `{type: "snapshot", seq, ...}`, then `{type: "seats", seq, ...}` per change.

    A client that falls behind gets a fresh snapshot; it may also send `{"type": "resync"}`.
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
        if realtime.seq_of(data) > seen:
            await websocket.send_text(data.decode())


async def _catch_up(websocket: WebSocket, event_id: int) -> int:
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
