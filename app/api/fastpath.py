"""Cached public reads served straight from Redis, before FastAPI.

A seat map, event detail or status that is in the cache is sent as the stored bytes with
one Redis round trip and no routing, validation, serialisation or middleware: the hot
path of an on-sale spike. That includes a view gone stale during a sale (see
`app.infra.cache`): it is sent as it is while another reader rebuilds it, or rebuilt
here by the one reader that got the lock. Anything else (a miss, another route, a
malformed id, Redis away, a failed rebuild) falls through to the application, which
produces the same bytes (or the error) and fills the cache. Hits
carry an `X-Request-ID` like every response, but are not access-logged (at on-sale rates
that log would cost more than the request).
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.caching import LIVE_DATA, etag_matches
from app.api.middleware import request_id
from app.core.config import get_settings
from app.infra import cache
from app.infra.cache import EventView, Payload
from app.schemas.common import MAX_DB_ID
from app.services import events

_VIEWS = {view.value: view for view in EventView}


def parse(path: str) -> tuple[int, EventView] | None:
    """(event id, view) of `/events/{id}`, `/events/{id}/seats` or `/events/{id}/status`."""
    parts = path.split("/")
    if len(parts) not in (3, 4) or parts[1] != "events" or not parts[2].isdigit():
        return None
    view = _VIEWS.get(parts[3] if len(parts) == 4 else "")
    event_id = int(parts[2])
    if view is None or not 1 <= event_id <= MAX_DB_ID:
        return None
    return event_id, view


class CachedReadsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and get_settings().cache_enabled:
            target = parse(scope["path"])
            payload = await _cached(*target) if target else None
            if payload is not None:
                await _send(scope, send, payload)
                return
        await self.app(scope, receive, send)


async def _cached(event_id: int, view: EventView) -> Payload | None:
    """The bytes to send for a view in the cache (fresh, stale while another reader
    rebuilds it, or rebuilt here), or None: not cached, or a rebuild that failed (the
    application then answers, errors included)."""
    found = await cache.fetch(cache.event_key(event_id, view), cache.event_version_key(event_id))
    if found is None:
        return None
    try:
        return await events.serve_cached(event_id, view, found)
    except Exception:
        return None


async def _send(scope: Scope, send: Send, payload: Payload) -> None:
    etag = payload.etag.encode()
    headers = [
        (b"etag", etag),
        (b"cache-control", LIVE_DATA.encode()),
        (b"x-cache", b"hit"),
        (b"x-request-id", request_id(scope).encode()),
    ]
    if _revalidated(scope, payload.etag):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload.body})


def _revalidated(scope: Scope, etag: str) -> bool:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return etag_matches(value.decode("latin-1"), etag)
    return False
