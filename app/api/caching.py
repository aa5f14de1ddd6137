"""HTTP side of cached reads: ETag, Cache-Control, and 304 on a matching If-None-Match."""

from fastapi import Request, Response

from app.infra.cache import Payload

JSON = "application/json"
LIVE_DATA = "no-cache"  # clients may keep a copy but must revalidate (cheap: 304)
LISTING = "public, max-age=30"


def respond(request: Request, payload: Payload, cache_control: str = LIVE_DATA) -> Response:
    headers = {"ETag": payload.etag, "Cache-Control": cache_control}
    if payload.hit:
        headers["X-Cache"] = "hit"
    if etag_matches(request.headers.get("if-none-match"), payload.etag):
        return Response(status_code=304, headers=headers)
    return Response(payload.body, media_type=JSON, headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names this ETag (weak or strong, or `*`)."""
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
