from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from app.models.enums import EventStatus, Seating, SeatStatus
from app.schemas.common import ORMModel

MAX_CAPACITY = 100_000

Name = Annotated[str, Field(min_length=1, max_length=200)]
Category = Annotated[str, Field(min_length=1, max_length=60)]
Price = Annotated[int, Field(ge=0, le=100_000_000)]


class SectionLayout(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9 _]+$")]
    rows: Annotated[int, Field(ge=1, le=500)]
    seats_per_row: Annotated[int, Field(ge=1, le=500)]
    price_cents: Price


class SeatLayout(BaseModel):
    sections: Annotated[list[SectionLayout], Field(min_length=1, max_length=50)]


class EventBase(BaseModel):
    name: Name
    description: str = Field(default="", max_length=10_000)
    venue: Name
    category: Category = "other"
    starts_at: AwareDatetime


class SeatedEventCreate(EventBase):
    seating: Literal[Seating.SEATED]
    layout: SeatLayout


class GeneralAdmissionEventCreate(EventBase):
    seating: Literal[Seating.GENERAL_ADMISSION]
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY)]
    price_cents: Price


EventCreate = Annotated[
    SeatedEventCreate | GeneralAdmissionEventCreate, Field(discriminator="seating")
]


class EventUpdate(BaseModel):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    venue: Name | None = None
    category: Category | None = None
    starts_at: AwareDatetime | None = None


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
