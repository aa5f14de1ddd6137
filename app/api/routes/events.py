from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import Id, Limit, Offset, UoW
from app.api.errors import responses
from app.crud.events import EventFilters
from app.schemas.common import Page
from app.schemas.event import EventDetail, EventRead, EventStatusRead, SeatMap
from app.services import events as service

router = APIRouter(prefix="/events", tags=["events"])


@router.get("/", response_model=Page[EventRead], responses=responses(422))
async def list_events(
    uow: UoW,
    category: Annotated[str | None, Query(max_length=60)] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="Search name, venue, description")
    ] = None,
    starts_from: Annotated[datetime | None, Query(alias="from")] = None,
    starts_to: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> Page[EventRead]:
    """Published upcoming events, soonest first."""
    filters = EventFilters(category=category, q=q, starts_from=starts_from, starts_to=starts_to)
    return await service.list_public(uow, filters, limit, offset)


@router.get("/{event_id}", response_model=EventDetail, responses=responses(404, 422))
async def get_event(uow: UoW, event_id: Id) -> EventDetail:
    return await service.detail(uow, event_id)


@router.get("/{event_id}/seats", response_model=SeatMap, responses=responses(404, 422))
async def seat_map(uow: UoW, event_id: Id) -> SeatMap:
    """Every seat with its price and status (an expired hold shows as available)."""
    return await service.seat_map(uow, event_id)


@router.get("/{event_id}/status", response_model=EventStatusRead, responses=responses(404, 422))
async def event_status(uow: UoW, event_id: Id) -> EventStatusRead:
    return await service.status(uow, event_id)
