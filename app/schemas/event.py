from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, model_validator

from app.models.enums import EventStatus, Seating, SeatStatus
from app.schemas.common import JSON_INT, ORMModel, RfcDateTime

MAX_CAPACITY = 100_000

Name = Annotated[str, Field(min_length=1, max_length=200)]
Category = Annotated[str, Field(min_length=1, max_length=60)]
Price = Annotated[int, Field(ge=0, le=100_000_000), JSON_INT]


class SectionLayout(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9 _]+$")]
    rows: Annotated[int, Field(ge=1, le=500), JSON_INT]
    seats_per_row: Annotated[int, Field(ge=1, le=500), JSON_INT]
    price_cents: Price


class SeatLayout(BaseModel):
    sections: Annotated[
        list[SectionLayout],
        Field(
            min_length=1,
            max_length=50,
            description=(
                f"Sections with unique names; at most {MAX_CAPACITY} seats in all"
                " (rows x seats_per_row, summed)."
            ),
        ),
    ]


AdmitPerSecond = Annotated[
    int, Field(ge=1, le=10_000, description="Fans let in per second"), JSON_INT
]
AdmissionMinutes = Annotated[
    int, Field(ge=1, le=120, description="How long an admission lets its holder book"), JSON_INT
]


class QueueSettings(BaseModel):
    """The event's virtual waiting room: with it on, holds need an admission token."""

    enabled: StrictBool = False
    admit_per_second: AdmitPerSecond = 50
    admission_minutes: AdmissionMinutes = 10


class QueueUpdate(BaseModel):
    """Any of the waiting-room settings; the rate may change during the sale."""

    enabled: StrictBool | None = None
    admit_per_second: AdmitPerSecond | None = None
    admission_minutes: AdmissionMinutes | None = None


SaleStartsAt = Annotated[
    RfcDateTime | None,
    Field(
        description="When holds (and admissions from the waiting room) begin; before `starts_at`"
    ),
]


class EventBase(BaseModel):
    name: Name
    description: str = Field(default="", max_length=10_000)
    venue: Name
    category: Category = "other"
    starts_at: RfcDateTime = Field(description="In the future")
    sale_starts_at: SaleStartsAt = None
    queue: QueueSettings = Field(default_factory=QueueSettings)

    @model_validator(mode="after")
    def _sale_before_event(self) -> "EventBase":
        if self.sale_starts_at is not None and self.sale_starts_at >= self.starts_at:
            raise ValueError("`sale_starts_at` must be before `starts_at`")
        return self


class SeatedEventCreate(EventBase):
    seating: Literal[Seating.SEATED]
    layout: SeatLayout


class GeneralAdmissionEventCreate(EventBase):
    seating: Literal[Seating.GENERAL_ADMISSION]
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY), JSON_INT]
    price_cents: Price


EventCreate = Annotated[
    SeatedEventCreate | GeneralAdmissionEventCreate, Field(discriminator="seating")
]


class EventUpdate(BaseModel):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    venue: Name | None = None
    category: Category | None = None
    starts_at: RfcDateTime | None = Field(default=None, description="In the future")
    sale_starts_at: SaleStartsAt = None
    queue: QueueUpdate | None = None


class Availability(BaseModel):
    total: int
    available: int
    held: int
    booked: int


class EventRead(ORMModel):
    id: int
    organizer_id: int
    name: str
    description: str
    venue: str
    category: str
    starts_at: datetime
    status: EventStatus
    seating: Seating
    total_capacity: int
    sale_starts_at: datetime | None = None
    queue: QueueSettings = Field(default_factory=QueueSettings)
    created_at: datetime
    updated_at: datetime


class EventDetail(EventRead):
    availability: Availability
    price_min_cents: int | None
    price_max_cents: int | None


class EventStatusRead(Availability):
    event_id: int


class SeatRead(ORMModel):
    id: int
    label: str
    section: str
    row: str
    number: int
    price_cents: int
    status: SeatStatus


class SeatMap(BaseModel):
    event_id: int
    seats: list[SeatRead]


@dataclass(frozen=True)
class EventFilters:
    category: str | None = None
    q: str | None = None
    starts_from: datetime | None = None
    starts_to: datetime | None = None
