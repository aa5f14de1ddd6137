from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from app.models.enums import BookingSource, BookingStatus
from app.schemas.common import DbId, ORMModel

MAX_SEATS_PER_REQUEST = 50


class BookingCreate(BaseModel):
    """Either exact `seat_ids`, or `quantity` (optionally within a `section`)."""

    event_id: DbId
    seat_ids: (
        Annotated[list[DbId], Field(min_length=1, max_length=MAX_SEATS_PER_REQUEST)] | None
    ) = None
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_REQUEST)] | None = None
    section: Annotated[str, Field(min_length=1, max_length=40)] | None = None

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> "BookingCreate":
        if (self.seat_ids is None) == (self.quantity is None):
            raise ValueError("give exactly one of `seat_ids` or `quantity`")
        if self.seat_ids is not None:
            if self.section is not None:
                raise ValueError("`section` goes with `quantity`, not with `seat_ids`")
            if len(set(self.seat_ids)) != len(self.seat_ids):
                raise ValueError("`seat_ids` contains the same seat twice")
        return self


class ConfirmRequest(BaseModel):
    payment_token: Annotated[str, Field(max_length=200)] | None = None


class BookedSeat(BaseModel):
    id: int
    label: str
    section: str
    price_cents: int


class TicketRead(ORMModel):
    id: int
    code: str
    seat_id: int
    qr_code_data: str
    checked_in_at: datetime | None


class BookingRead(BaseModel):
    id: int
    event_id: int
    user_id: int
    status: BookingStatus
    source: BookingSource
    seats: list[BookedSeat]
    total_cents: int
    expires_at: datetime | None
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    tickets: list[TicketRead]
