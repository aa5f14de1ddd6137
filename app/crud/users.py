"""Queries on users. Never commits."""

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User


class Credentials(NamedTuple):
    """What a login checks, as plain values: usable after the session has let go."""

    id: int
    password_hash: str
    is_active: bool


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def credentials(session: AsyncSession, email: str) -> Credentials | None:
    row = (
        await session.execute(
            select(User.id, User.password_hash, User.is_active).where(User.email == email.lower())
        )
    ).first()
    return None if row is None else Credentials(*row)


def add(session: AsyncSession, user: User) -> User:
    session.add(user)
    return user
