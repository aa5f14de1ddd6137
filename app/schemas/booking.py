from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    field_validator,
    model_validator,
)

from app.models.enums import BookingSource, BookingStatus
from app.schemas.common import JSON_INT, DbId, ORMModel

MAX_SEATS_PER_REQUEST = 50


class BookingCreate(BaseModel):
    """Either exact `seat_ids`, or `quantity` (optionally within a `section`)."""

    event_id: DbId
    seat_ids: (
        Annotated[list[DbId], Field(min_length=1, max_length=MAX_SEATS_PER_REQUEST)] | None
    ) = None
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_REQUEST), JSON_INT] | None = None
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


SeatIds = Annotated[
    list[DbId],
    Field(min_length=1, max_length=MAX_SEATS_PER_REQUEST, json_schema_extra={"uniqueItems": True}),
]
SectionName = Annotated[str, Field(min_length=1, max_length=40)]


class SeatsHold(BaseModel):
    """Hold these exact seats."""

    event_id: DbId
    seat_ids: SeatIds
    quantity: None = None
    section: None = None

    @field_validator("seat_ids")
    @classmethod
    def _distinct(cls, seat_ids: list[int]) -> list[int]:
        if len(set(seat_ids)) != len(seat_ids):
            raise ValueError("`seat_ids` contains the same seat twice")
        return seat_ids


class QuantityHold(BaseModel):
    """Hold any `quantity` seats, optionally within a `section`."""

    event_id: DbId
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_REQUEST), JSON_INT]
    section: SectionName | None = None
    seat_ids: None = None


def _exactly_one(schema: dict[str, Any]) -> None:
    # The two bodies exclude each other (each needs what the other forbids), so a body
    # matches one of them at most: the document says so with `oneOf`.
    schema["oneOf"] = schema.pop("anyOf")


class BookingRequest(RootModel[SeatsHold | QuantityHold]):
    """The body of `POST /bookings/`: exactly one of the two ways to choose seats."""

    model_config = ConfigDict(json_schema_extra=_exactly_one)

    def command(self) -> BookingCreate:
        return BookingCreate.model_validate(self.root.model_dump(exclude_none=True))


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
