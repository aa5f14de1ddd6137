"""Notifications. Never commits."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Notification


async def add_once(
    session: AsyncSession, user_id: int, kind: str, subject: str, body: str, dedupe_key: str
) -> bool:
    """Insert unless a notification with this key exists; True when it was new."""
    stmt = (
        insert(Notification)
        .values(
            user_id=user_id,
            kind=kind,
            subject=subject,
            body=body,
            dedupe_key=dedupe_key,
            sent_at=func.now(),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
    )
    return (await session.scalar(stmt)) is not None


async def list_for_user(
    session: AsyncSession, user_id: int, limit: int, offset: int
) -> tuple[Sequence[Notification], int]:
    total = await session.scalar(
        select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
    )
    stmt = (
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(stmt)).all(), total or 0
