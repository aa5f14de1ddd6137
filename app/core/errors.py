"""Domain errors: they know nothing of HTTP; `app.api.errors` maps them in one place."""

from typing import Any


class DomainError(Exception):
    """Base of every expected business outcome that is not a success."""

    code = "error"
    default_detail = "The request could not be completed."

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        if code is not None:
            self.code = code  # a more precise code than the class's, same HTTP status
        self.extra = extra
        super().__init__(self.detail)


class BadRequest(DomainError):
    code = "bad_request"
    default_detail = "The request is not valid."


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    default_detail = "Missing or invalid credentials."


class PaymentDeclined(DomainError):
    code = "payment_declined"
    default_detail = "The payment was declined; the hold is kept until it expires."


class Forbidden(DomainError):
    code = "forbidden"
    default_detail = "You are not allowed to do this."


class NotFound(DomainError):
    code = "not_found"
    default_detail = "Not found."


class Conflict(DomainError):
    code = "conflict"
    default_detail = "The request conflicts with the current state."


class SeatsUnavailable(Conflict):
    code = "seats_unavailable"
    default_detail = "Some of the requested seats are not available."


class NotEnoughSeats(Conflict):
    code = "not_enough_seats"
    default_detail = "Not enough seats are available."


class SeatLimitExceeded(Conflict):
    code = "seat_limit_exceeded"
    default_detail = "You would hold more seats for this event than allowed."


class InvalidState(Conflict):
    code = "invalid_state"


class HoldExpired(DomainError):
    code = "hold_expired"
    default_detail = "The hold has expired; its seats were released."


class IdempotencyMismatch(DomainError):
    code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was already used with a different request."


class InvalidInput(DomainError):
    """A request that is well-formed JSON but breaks a rule pydantic cannot see."""

    code = "invalid_input"


class RateLimited(DomainError):
    code = "rate_limited"
    default_detail = "Too many requests; slow down."


class Unavailable(DomainError):
    """Not now, for lack of capacity: the caller should retry after `retry_after` seconds.
    Refusing at once beats queueing a request until its client has given up."""

    code = "unavailable"
    default_detail = "The service is temporarily unavailable; retry shortly."

    def __init__(
        self, detail: str | None = None, *, retry_after: int = 1, code: str | None = None
    ) -> None:
        super().__init__(detail, code=code, retry_after=max(1, retry_after))


class Busy(Unavailable):
    """Every password-hashing slot of this process is taken (a login or sign-up rush)."""

    code = "busy"
    default_detail = "Too many logins and sign-ups are being processed; retry shortly."


class Overloaded(Unavailable):
    """No database connection became free in time (DB_POOL_TIMEOUT_S)."""

    code = "overloaded"
    default_detail = "The service is at capacity; retry shortly."


class DatabaseUnavailable(Unavailable):
    """The database connection was lost or could not be opened."""

    code = "database_unavailable"
    default_detail = "The database is unreachable; retry shortly."


class AdmissionRequired(Forbidden):
    """A hold on an event with a waiting room, without a valid admission from it."""

    code = "admission_required"
    default_detail = "This event has a waiting room: join it and book once admitted."


class QueueUnavailable(Unavailable):
    """The waiting room cannot answer (Redis is unreachable): it fails closed."""

    code = "queue_unavailable"
    default_detail = "The waiting room is unavailable right now; keep your place and retry."
