"""The one place where domain errors become HTTP responses."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from app.core import errors, metrics
from app.core.db import is_connection_lost, sqlstate
from app.schemas.common import ErrorBody

log = structlog.get_logger(__name__)

STATUS_BY_ERROR: list[tuple[type[errors.DomainError], int]] = [
    (errors.BadRequest, 400),
    (errors.NotAuthenticated, 401),
    (errors.PaymentDeclined, 402),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.HoldExpired, 410),
    (errors.IdempotencyMismatch, 422),
    (errors.InvalidInput, 422),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
]

DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired access token",
    402: "Payment declined",
    403: "Your role does not allow this",
    404: "Not found (or not yours)",
    409: "Conflict with the current state (seats taken, wrong status)",
    410: "The hold has expired",
    422: "Invalid request body or parameters",
    429: "Too many requests",
    503: "Overloaded, or the database is unreachable: retry after `Retry-After` seconds",
}

# SQLSTATEs of a database at capacity: too_many_connections, query_canceled (statement_timeout).
OVERLOAD_STATES = frozenset({"53300", "57014"})
LOST = (
    "The connection to the database was lost or refused; retry in a moment. A write may "
    "or may not have been saved: retry it with the same Idempotency-Key to be safe."
)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route's error codes, all shaped as ErrorBody."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in codes}


def status_for(exc: errors.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def _body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, **extra}


def error_response(exc: errors.DomainError) -> JSONResponse:
    """The response for a domain error (also sent by the ASGI fast paths, as it is)."""
    status = status_for(exc)
    metrics.child(metrics.ERRORS, exc.code).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if "retry_after" in exc.extra:  # 429 and 503: when to come back
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    return JSONResponse(
        _body(exc.detail, exc.code, **exc.extra), status_code=status, headers=headers
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    if _is_hold(request.scope):
        metrics.child(metrics.HOLDS_REFUSED, exc.code).inc()
    return error_response(exc)


def _is_hold(scope: Scope) -> bool:
    route = scope.get("route")
    return scope["method"] == "POST" and getattr(route, "path", None) == "/bookings/"


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {error.get('msg', 'invalid')}"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [dict(e) for e in exc.errors()]
    detail = "Invalid request: " + "; ".join(_describe(e) for e in problems[:5])
    slim = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in problems
    ]
    return JSONResponse(_body(detail, "validation_error", errors=slim), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        return _unparseable_body(exc.__cause__)
    code = {401: "not_authenticated", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(_body(str(exc.detail), code), status_code=exc.status_code, headers=headers)


def _unparseable_body(cause: BaseException) -> JSONResponse:
    # FastAPI answers 422 `json_invalid` to malformed JSON but 400 to a body it cannot
    # even decode (not UTF-8): both are the same mistake, and every route documents 422.
    problem = {
        "loc": ["body"],
        "msg": f"not valid JSON ({type(cause).__name__})",
        "type": "json_invalid",
    }
    detail = f"Invalid request: body: {problem['msg']}"
    return JSONResponse(_body(detail, "validation_error", errors=[problem]), status_code=422)


def _allowed_methods(request: Request) -> str:
    """Every method of every route at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def unavailable(exc: BaseException) -> errors.Unavailable | None:
    """The 503 for an error that means "not now" (overload, a lost connection), else None."""
    if isinstance(exc, PoolTimeout):
        return errors.Overloaded("Every database connection is busy; retry in a moment.")
    if is_connection_lost(exc):
        return errors.DatabaseUnavailable(LOST)
    if sqlstate(exc) in OVERLOAD_STATES:
        return errors.Overloaded("The database is at capacity; retry in a moment.")
    return None


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    refusal = unavailable(exc)
    if refusal is None:  # an OSError that is not about the database: a bug, as before
        raise exc
    log.info("unavailable", code=refusal.code, error=str(getattr(exc, "orig", exc))[:200])
    return await _domain_error(request, refusal)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # SQLSTATE class 22 (data exception): a value PostgreSQL cannot store, such as a NUL
    # byte in a string, is the caller's error. A lost connection or an overloaded database
    # is a 503. Anything else from the database is a bug.
    if not (sqlstate(exc) or "").startswith("22"):
        return await _unexpected(request, exc)
    log.warning("rejected_value", error=str(getattr(exc, "orig", exc))[:200])
    return JSONResponse(
        _body(
            "A value in the request cannot be stored (unsupported characters or out of range).",
            "invalid_value",
        ),
        status_code=422,  # like any other invalid input: no route documents a 400
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if unavailable(exc) is not None:  # however it got here, a lost connection is not a bug
        return await _unavailable(request, exc)
    log.exception("unhandled_error", exc_info=exc)
    return JSONResponse(
        _body("Internal server error; it has been logged.", "internal_error"), status_code=500
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # Not DBAPIErrors: waiting too long for a pooled connection, and a socket refused or
    # reset while connecting (PostgreSQL down or restarting).
    app.add_exception_handler(PoolTimeout, _unavailable)
    app.add_exception_handler(OSError, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
