"""CSV exports: an event's attendees (streamed, one keyset page at a time) and the
analytics summary.

The attendee list of a 50,000-ticket event is never built in memory, and no database
connection is held while the client reads. Each page (the tickets of the next
`PAGE_BOOKINGS` bookings, keyset on booking id) is read in a short transaction of its
own, its connection goes back to the pool, and only then is the page encoded and handed
to the response. A client that reads slowly pauses the generator at its `yield` and costs
one page of memory, never a pooled connection or an open transaction (a server-side
cursor would pin both for as long as the slowest download). The price: the file is not
one snapshot. Each ticket appears at most once and every ticket that exists throughout
appears, but a ticket scanned or cancelled while the file is written shows its state when
its page was read, and a booking confirmed meanwhile is included only if its page had
not yet been read.

Cells are protected against CSV (formula) injection as OWASP advises: a text cell that
begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a
spreadsheet shows it as text instead of running it. Names and e-mails are the buyer's own
words; section names the organizer's.
"""

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.db import UnitOfWork, retry_read_once, unit_of_work
from app.core.errors import NotFound
from app.crud import exports as crud
from app.models import Role, User
from app.schemas.analytics import AnalyticsSummary
from app.schemas.exports import ATTENDEE_COLUMNS, SUMMARY_COLUMNS, AttendeeFilter, SummaryView
from app.services import analytics

# Bookings per page (and per chunk sent). At 1 to 10 tickets a booking, 100 to 1,000 rows:
# 10 to 100 KB of CSV. A booking is never split across pages.
PAGE_BOOKINGS = 100
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
# Attendee cells written by people: seat label and section (the organizer's), buyer e-mail
# and name (the buyer's). The others are ours: codes, ids, statuses, digits.
FREE_TEXT = tuple(
    ATTENDEE_COLUMNS.index(name) for name in ("seat_label", "section", "buyer_email", "buyer_name")
)


@dataclass(frozen=True)
class CsvExport:
    filename: str
    chunks: AsyncIterator[bytes]


def safe_cell(value: object) -> object:
    """A cell a spreadsheet will not evaluate as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(row: Iterable[object]) -> list[object]:
    return [safe_cell(cell) for cell in row]


def encode_rows(rows: Iterable[Sequence[object]]) -> bytes:
    """RFC 4180 CSV (quoted as needed, CRLF line ends), UTF-8. Cells are written as they
    are: make them safe first (`safe_row`)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


async def open_attendees(
    uow: UnitOfWork, user: User, event_id: int, status: AttendeeFilter | None
) -> CsvExport:
    """The attendee list of an event the user manages (NotFound for anyone else's event),
    as a stream of CSV chunks. Access is checked now, before the response starts."""
    organizer_id = await crud.event_organizer(uow.session, event_id)
    if organizer_id is None or (user.role != Role.ADMIN and organizer_id != user.id):
        raise NotFound(f"Event {event_id} does not exist.")
    # Give the request's connection back now: the stream takes one per page, briefly.
    await uow.release()
    return CsvExport(f"event-{event_id}-attendees.csv", _attendee_chunks(event_id, status))


async def _attendee_chunks(event_id: int, status: AttendeeFilter | None) -> AsyncIterator[bytes]:
    yield encode_rows([ATTENDEE_COLUMNS])
    after, more = 0, True
    while more:
        booking_ids, rows = await _page(event_id, status, after)
        chunk = encode_rows(_attendee(row) for row in rows)
        del rows  # one page in memory at a time: not this one while the next is read
        if chunk:  # no connection is held from here on
            yield chunk
        more = len(booking_ids) == PAGE_BOOKINGS
        after = booking_ids[-1] if booking_ids else after


async def _page(
    event_id: int, status: AttendeeFilter | None, after: int
) -> tuple[list[int], Sequence[Any]]:
    """The next page of bookings and their tickets, in a short transaction of its own,
    retried once on a lost connection. A failure past that ends the stream with an error:
    the client sees an incomplete transfer (no final chunk), never a shortened file."""

    async def read() -> tuple[list[int], Sequence[Any]]:
        ids = await crud.booking_page(uow.session, event_id, status, after, PAGE_BOOKINGS)
        return ids, (await crud.attendees_of(uow.session, ids, status) if ids else [])

    async with unit_of_work() as uow:
        return await retry_read_once(read, before_retry=uow.rollback)


def _attendee(row: Any) -> list[object]:
    cells = list(row)
    for i in FREE_TEXT:
        cells[i] = safe_cell(cells[i])
    return cells


async def summary_csv(user: User, by: SummaryView) -> tuple[str, bytes]:
    """(filename, CSV) of the analytics summary the user sees as JSON: the same figures,
    from the same 30-second cache, as one table."""
    summary = AnalyticsSummary.model_validate_json((await analytics.summary(user)).body)
    table = _SUMMARY_TABLES[by](summary)
    return f"analytics-summary-{by.value}.csv", encode_rows(safe_row(row) for row in table)


def _by_event(summary: AnalyticsSummary) -> list[Sequence[object]]:
    rank = {e.event_id: n for n, e in enumerate(summary.top_events, start=1)}
    return [
        SUMMARY_COLUMNS,
        *(
            (
                e.event_id,
                e.name,
                e.capacity,
                e.seats_sold,
                e.utilization,
                money(e.revenue_cents),
                e.waitlist,
                rank.get(e.event_id, ""),
            )
            for e in summary.events
        ),
    ]


def _by_day(summary: AnalyticsSummary) -> list[Sequence[object]]:
    days = [(d.day.isoformat(), d.bookings, d.confirmed) for d in summary.bookings_per_day]
    return [("day", "bookings", "confirmed"), *days]


def _by_metric(summary: AnalyticsSummary) -> list[Sequence[object]]:
    by_status = [(f"bookings_{s}", n) for s, n in summary.bookings_by_status.items()]
    return [
        ("metric", "value"),
        ("scope", summary.scope),
        *by_status,
        ("revenue", money(summary.revenue_cents)),
        ("cancellation_rate", summary.cancellation_rate),
        ("waitlist_total", summary.waitlist_total),
        ("events", len(summary.events)),
        ("capacity", sum(e.capacity for e in summary.events)),
        ("seats_sold", sum(e.seats_sold for e in summary.events)),
    ]


_SUMMARY_TABLES = {
    SummaryView.EVENT: _by_event,
    SummaryView.DAY: _by_day,
    SummaryView.METRIC: _by_metric,
}
