from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.caching import LISTING, respond
from app.api.deps import Id, Limit, Offset
from app.api.errors import responses
from app.infra.cache import EventView
from app.schemas.common import Page, RfcDateTime
from app.schemas.event import EventDetail, EventFilters, EventRead, EventStatusRead, SeatMap
from app.services import events as service

router = APIRouter(prefix="/events", tags=["events"])

Search = Annotated[str | None, Query(max_length=100, description="Search name, venue, description")]


@router.get("/", response_model=Page[EventRead], responses=responses(422))
async def list_events(
    request: Request,
    category: Annotated[str | None, Query(max_length=60)] = None,
    q: Search = None,
    starts_from: Annotated[RfcDateTime | None, Query(alias="from")] = None,
    starts_to: Annotated[RfcDateTime | None, Query(alias="to")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> Response:
    """Published upcoming events, soonest first. Cached (30 min, dropped on any change)."""
    filters = EventFilters(category=category, q=q, starts_from=starts_from, starts_to=starts_to)
    return respond(request, await service.list_public_payload(filters, limit, offset), LISTING)


@router.get("/{event_id}", response_model=EventDetail, responses=responses(404, 422))
async def get_event(request: Request, event_id: Id) -> Response:
    """One public event with availability counts. Cached, revalidate with `If-None-Match`."""
    return respond(request, await service.event_payload(event_id, EventView.DETAIL))


@router.get("/{event_id}/seats", response_model=SeatMap, responses=responses(404, 422))
async def seat_map(request: Request, event_id: Id) -> Response:
    """Every seat with its price and status (an expired hold shows as available). Cached."""
    return respond(request, await service.event_payload(event_id, EventView.SEATS))


@router.get("/{event_id}/status", response_model=EventStatusRead, responses=responses(404, 422))
async def event_status(request: Request, event_id: Id) -> Response:
    """`{total, available, held, booked}`. Cached."""
    return respond(request, await service.event_payload(event_id, EventView.STATUS))
