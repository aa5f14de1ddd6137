import enum
from datetime import datetime

from pydantic import BaseModel, Field


class QueueState(enum.StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"  # book with `admission_token` before `admission_expires_at`
    BOOKED = "booked"  # admitted, and a hold was made with it (still valid until expiry)
    LEFT = "left"
    EXPIRED = "expired"  # admitted, but the admission ran out unused: join again
    OFF = "off"  # the event has no waiting room (any more): book directly


class QueueStatus(BaseModel):
    """Where the caller stands in an event's waiting room."""

    event_id: int
    state: QueueState
    position: int | None = Field(
        description="1 = next to be admitted; null until the sale opens (the early "
        "arrivals' order is drawn then) and once out of the line"
    )
    ahead: int | None = Field(description="People ahead of you")
    estimated_wait_s: int | None = Field(description="Seconds until admission, at today's rate")
    queue_token: str | None = Field(
        description="Your signed place in line: keep it and send it back (`Queue-Token`) "
        "with every poll; should the line ever be lost, it restores your place"
    )
    admission_token: str | None = Field(
        default=None, description="Send as `Admission-Token` with `POST /bookings/`"
    )
    admission_expires_at: datetime | None = None
    opens_in_s: int | None = Field(default=None, description="Seconds until the sale opens")
    rebuilding: bool = Field(
        default=False,
        description="The line is being rebuilt after an outage: admissions "
        "resume in a few seconds, in the original order",
    )
    poll_after_s: float = Field(description="When to ask again (or use the WebSocket)")


class QueueStats(BaseModel):
    """An event's waiting room as its organizer sees it."""

    event_id: int
    enabled: bool
    admit_per_second: int
    admission_minutes: int
    sale_starts_at: datetime | None
    waiting: int = Field(description="People in the line now")
    admitted_now: int = Field(description="Admitted and not yet booked nor expired")
    joined: int
    restored: int = Field(description="Places restored from queue tokens after a lost line")
    admitted: int
    booked: int = Field(description="Admissions used for a hold")
    left: int
    expired: int = Field(description="Admissions that ran out unused (their slot went on)")
    abandonment_rate: float = Field(description="(left + expired) / joined")
    admitted_per_second: float | None = Field(
        description="Measured since the sale opened (the target is admit_per_second)"
    )
    estimated_drain_s: int = Field(description="Seconds until the line is empty at the rate")
