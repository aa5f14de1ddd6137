from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.caching import respond
from app.api.deps import AdminUser, Id, Limit, Offset, OrganizerUser, UoW
from app.api.errors import responses
from app.models import ReportPeriod
from app.schemas.analytics import AnalyticsSummary, ReportRead
from app.schemas.checkin import CheckinRead, CheckinRequest
from app.schemas.common import Page
from app.schemas.event import EventCreate, EventDetail, EventRead, EventUpdate
from app.schemas.exports import AttendeeFilter, SummaryView
from app.schemas.user import RoleUpdate, UserRead
from app.services import analytics as analytics_service
from app.services import checkin as checkin_service
from app.services import events as events_service
from app.services import exports as exports_service
from app.services import users as users_service

router = APIRouter(prefix="/admin", tags=["admin"])

MANAGE = responses(401, 403, 404, 409, 422)


@router.post(
    "/events", status_code=201, response_model=EventRead, responses=responses(401, 403, 422)
)
async def create_event(uow: UoW, user: OrganizerUser, body: EventCreate) -> EventRead:
    """Create a draft event with a seat layout (sections of rows x seats) or a GA capacity."""
    result = await events_service.create(uow, user, body)
    await uow.commit()
    return result


@router.get("/events", response_model=Page[EventRead], responses=responses(401, 403, 422))
async def my_events(
    uow: UoW, user: OrganizerUser, limit: Limit = 20, offset: Offset = 0
) -> Page[EventRead]:
    """The events you manage (an admin: all), drafts included."""
    return await events_service.list_managed(uow, user, limit, offset)


@router.get("/events/{event_id}", response_model=EventDetail, responses=MANAGE)
async def managed_event(uow: UoW, user: OrganizerUser, event_id: Id) -> EventDetail:
    return await events_service.managed_detail(uow, user, event_id)


@router.put("/events/{event_id}", response_model=EventRead, responses=MANAGE)
async def update_event(uow: UoW, user: OrganizerUser, event_id: Id, body: EventUpdate) -> EventRead:
    """Change name, description, venue, category or start time."""
    result = await events_service.update(uow, user, event_id, body)
    await uow.commit()
    return result


@router.post("/events/{event_id}/publish", response_model=EventRead, responses=MANAGE)
async def publish_event(uow: UoW, user: OrganizerUser, event_id: Id) -> EventRead:
    result = await events_service.publish(uow, user, event_id)
    await uow.commit()
    return result


@router.delete("/events/{event_id}", response_model=EventRead, responses=MANAGE)
async def cancel_event(uow: UoW, user: OrganizerUser, event_id: Id) -> EventRead:
    """Cancel the event and all its bookings (nothing is deleted)."""
    result = await events_service.cancel(uow, user, event_id)
    await uow.commit()
    return result


@router.post("/users/{user_id}/role", response_model=UserRead, responses=MANAGE)
async def set_role(uow: UoW, admin: AdminUser, user_id: Id, body: RoleUpdate) -> UserRead:
    result = await users_service.set_role(uow, admin, user_id, body.role)
    await uow.commit()
    return result


@router.post(
    "/checkin", response_model=CheckinRead, responses=responses(400, 401, 403, 404, 409, 422)
)
async def check_in(uow: UoW, user: OrganizerUser, body: CheckinRequest) -> CheckinRead:
    """Admit a ticket by `code` or `qr_code_data` (signature checked); once only."""
    result = await checkin_service.check_in(uow, user, body)
    await uow.commit()
    return result


@router.get("/analytics/summary", response_model=AnalyticsSummary, responses=responses(401, 403))
async def analytics_summary(request: Request, user: OrganizerUser) -> Response:
    """Bookings by status, revenue, utilization and waitlists per event, top events,
    cancellation rate, bookings per day (30 days). Admins: all events; organizers: theirs.
    Cached for 30 s."""
    return respond(request, await analytics_service.summary(user))


@router.get(
    "/analytics/reports", response_model=Page[ReportRead], responses=responses(401, 403, 422)
)
async def analytics_reports(
    uow: UoW,
    admin: AdminUser,
    period: Annotated[ReportPeriod | None, Query()] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> Page[ReportRead]:
    """Daily and weekly reports written by the scheduler, newest first."""
    del admin
    return await analytics_service.reports(uow, period, limit, offset)


CSV_FILE: dict[int | str, dict[str, object]] = {
    200: {"description": "A CSV file (UTF-8, RFC 4180)", "content": {"text/csv": {}}}
}


def _attachment(filename: str) -> dict[str, str]:
    # Attendee lists hold buyers' names and e-mails: no shared cache keeps a copy.
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    }


@router.get(
    "/events/{event_id}/attendees.csv",
    response_class=StreamingResponse,
    responses={**CSV_FILE, **responses(401, 403, 404, 422)},
)
async def attendees_csv(
    uow: UoW,
    user: OrganizerUser,
    event_id: Id,
    status: Annotated[
        AttendeeFilter | None,
        Query(description="confirmed (valid + checked_in), valid, checked_in or cancelled"),
    ] = None,
) -> StreamingResponse:
    """One row per ticket of the event, in issue order: code, seat, section, price paid,
    buyer e-mail and name, booking id and status, ticket status (valid, checked_in,
    cancelled), checked-in and issued times (ISO 8601, UTC). Streamed page by page; cells
    that a spreadsheet would run as formulas are prefixed with `'`."""
    export = await exports_service.open_attendees(uow, user, event_id, status)
    return StreamingResponse(
        export.chunks,
        media_type=exports_service.CSV_MEDIA_TYPE,
        headers=_attachment(export.filename),
    )


@router.get(
    "/analytics/summary.csv",
    response_class=Response,
    responses={**CSV_FILE, **responses(401, 403, 422)},
)
async def analytics_summary_csv(
    user: OrganizerUser,
    by: Annotated[
        SummaryView,
        Query(description="event: a row per event; day: a row per day; metric: a row per figure"),
    ] = SummaryView.EVENT,
) -> Response:
    """The analytics summary as a spreadsheet table (the figures of /admin/analytics/summary)."""
    filename, body = await exports_service.summary_csv(user, by)
    return Response(body, media_type=exports_service.CSV_MEDIA_TYPE, headers=_attachment(filename))
