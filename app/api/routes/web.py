"""The web seat picker: static files under `/app/` (no build step), `/` sending there,
and the one API route the page needs that JSON clients do not: a ticket's QR code."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.api.deps import CurrentUser, Id, UoW
from app.api.errors import responses
from app.services import qr

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
WEB_PATH = "/app"

router = APIRouter(tags=["bookings"])


class SvgResponse(Response):
    media_type = "image/svg+xml"


# The errors are JSON like everywhere (`responses`); only a success is SVG.
SVG_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "The QR code", "content": {SvgResponse.media_type: {}}}
}


@router.get(
    "/bookings/{booking_id}/tickets/{ticket_id}/qr.svg",
    response_class=Response,
    responses=SVG_OK | responses(401, 404, 422),
)
async def ticket_qr(uow: UoW, user: CurrentUser, booking_id: Id, ticket_id: Id) -> SvgResponse:
    """The ticket's QR code (its signed `qr_code_data`) as SVG, drawn on the server.
    Owner (or admin) only: anyone else's booking is a 404, like every booking route."""
    body = await qr.ticket_svg(uow, user, booking_id, ticket_id)
    return SvgResponse(body, headers={"Cache-Control": "private, no-store"})


async def _home() -> RedirectResponse:
    return RedirectResponse(f"{WEB_PATH}/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the page from this process: `GET /` -> `/app/`, files from `app/web/`."""
    app.add_api_route("/", _home, methods=["GET"], include_in_schema=False)
    app.mount(WEB_PATH, StaticFiles(directory=WEB_DIR, html=True), name="web")
