"""Stored responses of `Idempotency-Key` requests (see `app.api.idempotency`). Never commits."""

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyRecord

IN_PROGRESS = 0


async def claim(session: AsyncSession, user_id: int, key: str, fingerprint: str) -> bool:
    """Reserve the key in this transaction; False when another request already has it.

    A concurrent request with the same key waits here on the unique index until the
    first one commits (then this returns False) or rolls back (then this one wins).
    """
    stmt = (
        insert(IdempotencyRecord)
        .values(
            user_id=user_id, key=key, fingerprint=fingerprint, status_code=IN_PROGRESS, response=b""
        )
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(IdempotencyRecord.key)
    )
    return (await session.scalar(stmt)) is not None


async def get(session: AsyncSession, user_id: int, key: str) -> IdempotencyRecord | None:
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
    )
    return await session.scalar(stmt)


async def store_response(
    session: AsyncSession, user_id: int, key: str, status_code: int, response: bytes
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .values(status_code=status_code, response=response)
    )
