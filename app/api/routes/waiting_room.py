"""The virtual waiting room: join, poll (or follow a WebSocket), leave; and the
organizer's view. Joining and polling know the caller from the access token alone (no
account read) and answer from Redis: they must stay cheap with 10,000 fans polling."""

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from app.api.deps import AdmissionToken, Id, OrganizerUser, UoW, client_ip, oauth2_scheme
from app.api.errors import responses
from app.core.admission import queue_holder
from app.core.errors import NotAuthenticated, NotFound, QueueUnavailable
from app.core.security import decode_access_token
from app.schemas.waiting_room import QueueState, QueueStats, QueueStatus
from app.services import waiting_room as service

router = APIRouter(tags=["waiting room"])

JSON = "application/json"
PUSH_EVERY_S = 1.0
CLOSE_NOT_QUEUED = 4404
CLOSE_DONE = 1000
_TOKEN_HELP = "Your signed place in line, as the last answer gave it (restores a lost place)"


async def token_user(token: Annotated[str | None, Depends(oauth2_scheme)]) -> int:
    """The user id of a valid access token: its signature is the proof, no account read."""
    if not token:
        raise NotAuthenticated("Log in first: send `Authorization: Bearer <token>`.")
    return decode_access_token(token)


TokenUser = Annotated[int, Depends(token_user)]
QueueToken = Annotated[
    str | None, Header(alias="Queue-Token", max_length=200, description=_TOKEN_HELP)
]


def _json(status: QueueStatus) -> Response:
    return Response(status.model_dump_json().encode(), media_type=JSON)


@router.post(
    "/events/{event_id}/queue",
    response_model=QueueStatus,
    responses=responses(401, 404, 409, 422, 429, 503),
)
async def join(
    request: Request, user_id: TokenUser, event_id: Id, queue_token: QueueToken = None
) -> Response:
    """Take a place in the event's waiting room; joining again returns the same place.

    Before `sale_starts_at` every arrival gets a random place among the early ones (drawn
    when the sale opens, so polling fast gains nothing); later arrivals line up in order.
    """
    return _json(await service.join(user_id, event_id, queue_token, client_ip(request)))


@router.get(
    "/events/{event_id}/queue/me",
    response_model=QueueStatus,
    responses=responses(401, 404, 422, 503),
)
async def my_place(
    user_id: TokenUser,
    event_id: Id,
    queue_token: QueueToken = None,
    admission_token: AdmissionToken = None,
) -> Response:
    """Your position and estimated wait; once admitted, your `admission_token`. Answered
    from Redis alone; poll after `poll_after_s`, or follow `WS /events/{id}/queue/live`."""
    return _json(await service.status(user_id, event_id, queue_token, admission_token))


@router.delete(
    "/events/{event_id}/queue/me",
    response_model=QueueStatus,
    responses=responses(401, 404, 422, 503),
)
async def leave(user_id: TokenUser, event_id: Id) -> Response:
    """Leave the line (or give up an unused admission: the next in line gets it)."""
    return _json(await service.leave(user_id, event_id))


@router.get(
    "/admin/events/{event_id}/queue",
    response_model=QueueStats,
    responses=responses(401, 403, 404, 422, 503),
    tags=["admin"],
)
async def queue_stats(uow: UoW, user: OrganizerUser, event_id: Id) -> QueueStats:
    """Queue length, admissions (target and measured rate), bookings made with them,
    and abandonment. Change the rate with `PUT /admin/events/{id}` `{queue: {...}}`."""
    return await service.stats(uow, user, event_id)


@router.websocket("/events/{event_id}/queue/live")
async def live(websocket: WebSocket, event_id: int, queue_token: str = Query()) -> None:
    """`?queue_token=…`: the same answers as `GET …/queue/me`, sent when they change
    (checked every second), until you are admitted; then the socket closes."""
    user_id = queue_holder(queue_token, event_id)
    await websocket.accept()
    if user_id is None:
        await websocket.close(code=CLOSE_NOT_QUEUED, reason="not a queue token of this event")
        return
    listener = asyncio.create_task(_until_closed(websocket))
    try:
        await _push(websocket, event_id, user_id, queue_token, listener)
    except WebSocketDisconnect:
        pass
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _push(
    websocket: WebSocket, event_id: int, user_id: int, token: str, listener: "asyncio.Task[None]"
) -> None:
    sent = ""
    while not listener.done():
        try:
            status = await service.status(user_id, event_id, token, None)
        except NotFound as exc:
            await websocket.close(code=CLOSE_NOT_QUEUED, reason=exc.detail[:120])
            return
        except QueueUnavailable as exc:
            retry = exc.extra["retry_after"]
            await websocket.send_text(f'{{"type":"unavailable","retry_after":{retry}}}')
            await asyncio.sleep(retry)
            continue
        token = status.queue_token or token
        text = status.model_dump_json()
        if text != sent:
            await websocket.send_text(text)
            sent = text
        if status.state != QueueState.WAITING:
            await websocket.close(code=CLOSE_DONE)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(listener), PUSH_EVERY_S)


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
