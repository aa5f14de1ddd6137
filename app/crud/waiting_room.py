"""The one query of the waiting room: an event's sale settings. Never commits."""

from typing import Any

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Prepared
from app.models import Event

_SALE_SETTINGS = Prepared(
    select(
        Event.status,
        Event.starts_at,
        Event.sale_starts_at,
        Event.queue_enabled,
        Event.queue_admit_per_second,
        Event.queue_admission_minutes,
        Event.updated_at,
    ).where(Event.id == bindparam("event_id", type_=Integer))
)


async def sale_settings(session: AsyncSession, event_id: int) -> Any | None:
    """(status, starts_at, sale_starts_at, queue_enabled, admit_per_second,
    admission_minutes, updated_at) of the event, or None when it does not exist."""
    return (await _SALE_SETTINGS.execute(session, event_id=event_id)).one_or_none()
