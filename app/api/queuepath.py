"""The waiting room's two hot requests answered before FastAPI: joining
(`POST /events/{id}/queue`) and polling (`GET /events/{id}/queue/me`).

Ten thousand fans joining within seconds and then polling are most of an on-sale's
requests, and FastAPI's routing and dependency solving were half of each one's CPU
(measured in-process: 400 µs a poll through FastAPI; see docs/PERFORMANCE.md). Here the
path is matched by hand, the caller is the access token's subject, and the same service
functions and the same error mapping (`errors.error_response`) as the FastAPI routes in
`app.api.routes.waiting_room` are used, so both answer alike; those routes document the
API and take what this does not match (a malformed or out-of-range id: 422). Answers
carry an `X-Request-ID` but are not access-logged, like cached reads.

At most SLOTS of these are in progress per process; more wait for a slot (up to
SLOT_WAIT_S, then 503 with Retry-After). When a join wave saturates a process, its event
loop runs callbacks first come, first served: without the bound, every step of a hold
waited behind hundreds of queued joins and polls (admitted fans' holds p99 ~650 ms while
10,000 fans arrived); with it, fans in line wait a little longer and the ones admitted
book at once.
"""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response, unavailable
from app.api.middleware import request_id
from app.core.errors import DomainError, NotAuthenticated, Overloaded
from app.core.security import decode_access_token
from app.schemas.common import MAX_DB_ID
from app.schemas.waiting_room import QueueStatus
from app.services import waiting_room as service

JSON = "application/json"
SLOTS = 16
SLOT_WAIT_S = 1.0
RETRY_AFTER_MAX_S = 3
MAX_TOKEN = 200  # Queue-Token and Admission-Token, as the FastAPI routes declare them
WANTED = (b"authorization", b"queue-token", b"admission-token")


def match(method: str, path: str) -> tuple[str, int] | None:
    """("join" | "poll", event id) for the two requests served here, else None."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "events" or parts[3] != "queue" or not parts[2].isdigit():
        return None
    event_id = int(parts[2])
    if not 1 <= event_id <= MAX_DB_ID:
        return None
    if method == "POST" and len(parts) == 4:
        return "join", event_id
    if method == "GET" and len(parts) == 5 and parts[4] == "me":
        return "poll", event_id
    return None


class WaitingRoomFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = match(scope["method"], scope["path"]) if scope["type"] == "http" else None
        headers = _headers(scope) if found is not None else None
        if found is None or headers is None:
            await self.app(scope, receive, send)
            return
        try:
            async with self._slot():
                status = await _answer(scope, found, headers)
        except DomainError as exc:
            response: Response = error_response(exc)
        except Exception as exc:  # the database unreachable or at capacity: 503, as the app
            refusal = unavailable(exc)
            if refusal is None:
                raise
            response = error_response(refusal)
        else:
            response = Response(status.model_dump_json().encode(), media_type=JSON)
        response.headers["X-Request-ID"] = request_id(scope)
        await response(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(SLOTS)
        try:
            if self._slots.locked():  # wait_for costs a task: only when there is a wait
                await asyncio.wait_for(self._slots.acquire(), SLOT_WAIT_S)
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                "The waiting room is very busy; keep your place and retry.",
                retry_after=random.randint(1, RETRY_AFTER_MAX_S),
            ) from None
        try:
            yield
        finally:
            self._slots.release()


def _headers(scope: Scope) -> dict[bytes, str] | None:
    """The three headers used here; None when one is too long (the routes answer 422)."""
    out: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in WANTED:
            if len(value) > MAX_TOKEN and name != b"authorization":
                return None
            out[name] = value.decode("latin-1")
    return out


async def _answer(scope: Scope, found: tuple[str, int], headers: dict[bytes, str]) -> QueueStatus:
    kind, event_id = found
    user_id = _caller(headers.get(b"authorization"))
    queue_token = headers.get(b"queue-token")
    if kind == "join":
        client = scope.get("client")
        return await service.join(
            user_id, event_id, queue_token, client[0] if client else "unknown"
        )
    return await service.status(user_id, event_id, queue_token, headers.get(b"admission-token"))


def _caller(authorization: str | None) -> int:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("Log in first: send `Authorization: Bearer <token>`.")
    return decode_access_token(token)
