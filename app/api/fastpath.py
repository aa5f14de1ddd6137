"""Cached public reads served straight from Redis, before FastAPI.

A seat map, event detail or status that is in the cache (and fresh enough, see
`app.infra.cache`) is sent as the stored bytes with one Redis round trip and no routing,
validation, serialisation or middleware: the hot path of an on-sale spike. Anything else
(a miss, a view to rebuild, another route, a malformed id, Redis away) falls through to
the application, which produces the same bytes and fills the cache. Hits
carry an `X-Request-ID` like every response, but are not access-logged (at on-sale rates
that log would cost more than the request).
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.caching import LIVE_DATA, etag_matches
from app.api.middleware import request_id
from app.core.config import get_settings
from app.infra import cache
from app.infra.cache import EventView, Freshness, Payload
from app.schemas.common import MAX_DB_ID

_VIEWS = {view.value: view for view in EventView}


def cache_keys(path: str) -> tuple[str, str] | None:
    """The cache key of `/events/{id}`, `/events/{id}/seats` or `/events/{id}/status`,
    and its event's version key."""
    parts = path.split("/")
    if len(parts) not in (3, 4) or parts[1] != "events" or not parts[2].isdigit():
        return None
    view = _VIEWS.get(parts[3] if len(parts) == 4 else "")
    event_id = int(parts[2])
    if view is None or not 1 <= event_id <= MAX_DB_ID:
        return None
    return cache.event_key(event_id, view), cache.event_version_key(event_id)


class CachedReadsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and get_settings().cache_enabled:
            keys = cache_keys(scope["path"])
            found = await cache.fetch(*keys) if keys else None
            # A view stale for longer than allowed goes to the application, where one
            # reader rebuilds it and the others are served these bytes meanwhile.
            if found is not None and found.freshness() is Freshness.FRESH:
                await _send(scope, send, found.payload)
                return
        await self.app(scope, receive, send)


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
