from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from app.models.enums import ReportPeriod
from app.schemas.common import ORMModel


class EventFigures(BaseModel):
    event_id: int
    name: str
    capacity: int
    seats_sold: int
    utilization: float  # seats sold / capacity, 0..1
    revenue_cents: int
    waitlist: int


class DayFigures(BaseModel):
    day: date
    bookings: int
    confirmed: int


class AnalyticsSummary(BaseModel):
    scope: str  # "all events" or "events of organizer N"
    bookings_by_status: dict[str, int]
    revenue_cents: int
    cancellation_rate: float  # cancelled / (confirmed + cancelled)
    events: list[EventFigures]
    top_events: list[EventFigures]  # by seats sold, at most 5
    waitlist_total: int
    bookings_per_day: list[DayFigures]  # last 30 days, days with bookings


class ReportRead(ORMModel):
    id: int
    period: ReportPeriod
    period_start: date
    generated_at: datetime
    data: dict[str, Any]
