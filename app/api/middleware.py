"""Plain ASGI middleware: a request id per request (taken from `X-Request-ID` or made,
logged, echoed back), and the request body size limit."""

import time
import uuid

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("evently.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method", "WS"),
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


def request_id(scope: Scope) -> str:
    """The caller's `X-Request-ID` when it is a sane token, else a new one."""
    return _incoming_id(scope) or uuid.uuid4().hex


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            return text if text.replace("-", "").isalnum() else None
    return None


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed request body passes the limit."""


class BodyLimitMiddleware:
    """413 for a request body over `limit` bytes (MAX_BODY_BYTES), before anything
    buffers or parses it: at once when Content-Length says so, else as soon as the
    streamed chunks add up to more (a chunked upload declares no length).

    It wraps the ASGI fast paths as well as FastAPI (see `app.main.serve`), so no route
    can be sent a 10 MB body. When the body turns out too large while the application is
    reading it, whatever the application answers (FastAPI makes a 400 of the error) is
    dropped and the 413 sent instead.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await self._counted(scope, receive, send)
        elif declared > self.limit:
            await too_large(scope, self.limit)(scope, receive, send)
        else:  # the server delivers exactly Content-Length bytes: nothing to count
            await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if received > self.limit:
                return  # the application's answer to a body it never got whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if received <= self.limit:
                raise
        if received > self.limit and not started:
            await too_large(scope, self.limit)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def too_large(scope: Scope, limit: int) -> JSONResponse:
    """The 413; the connection is closed, so the server need not read the rest."""
    return JSONResponse(
        {
            "detail": f"The request body is larger than the limit of {limit} bytes.",
            "code": "body_too_large",
            "limit": limit,
        },
        status_code=413,
        headers={"Connection": "close", "X-Request-ID": request_id(scope)},
    )
