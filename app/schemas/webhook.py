from datetime import datetime
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

from app.schemas.common import DbId, ORMModel

WebhookEventType = Literal[
    "booking.confirmed",
    "booking.cancelled",
    "event.updated",
    "event.cancelled",
    "event.sold_out",
    "waitlist.offered",
]
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="Signs every delivery; generated (and shown once) when not given.",
    )
    events: list[WebhookEventType] = Field(min_length=1, max_length=6)
    event_id: DbId | None = Field(
        default=None, description="One event only; unset: all of the organizer's events."
    )


class WebhookRead(ORMModel):
    id: int
    url: str
    events: list[str]
    event_id: int | None
    organizer_id: int | None
    created_at: datetime
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookCreated(WebhookRead):
    secret: str = Field(description="Shown only in this response: keep it to verify signatures.")


class DeliveryRead(ORMModel):
    id: int
    webhook_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
