"""QR codes of tickets as SVG, drawn on the server with segno: the web page needs no QR
library, no script of anyone else's and no CDN."""

import io

import segno

from app.core.db import UnitOfWork
from app.core.errors import NotFound
from app.models import User
from app.services import booking


def svg(data: str, title: str) -> bytes:
    """The QR code of `data` as a standalone SVG document, black on white."""
    code = segno.make_qr(data, error="m")
    out = io.BytesIO()
    code.save(out, kind="svg", scale=4, border=4, xmldecl=False, title=title, light="#fff")
    return out.getvalue()


async def ticket_svg(uow: UnitOfWork, user: User, booking_id: int, ticket_id: int) -> bytes:
    """The QR code of a ticket of the caller's booking (its signed `qr_code_data`); a
    ticket of someone else's booking, or of another booking, does not exist."""
    found = await booking.get(uow, user, booking_id)  # NotFound unless the owner (or admin)
    for ticket in found.tickets:
        if ticket.id == ticket_id:
            return svg(ticket.qr_code_data, f"Ticket {ticket.code}")
    raise NotFound(f"Ticket {ticket_id} of booking {booking_id} does not exist.")
