"""Database engine, sessions, and the unit of work that runs side effects after commit."""

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy import CursorResult
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.expression import ClauseElement

from app.core.config import Settings, get_settings

log = structlog.get_logger(__name__)

AfterCommit = Callable[[], Awaitable[None]]

# SQLSTATEs that mean "someone else holds what you need": lock_not_available,
# deadlock_detected, serialization_failure. They become 409s, never 500s.
LOCK_FAILURE_STATES = frozenset({"55P03", "40P01", "40001"})
UNIQUE_VIOLATION = "23505"


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine whose every connection has short lock and statement timeouts."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        connect_args={
            "server_settings": {
                # Set per connection so no request pays a round trip for `SET LOCAL`.
                "lock_timeout": str(settings.lock_timeout_ms),
                "statement_timeout": str(settings.statement_timeout_ms),
                "application_name": "evently",
            }
        },
    )


class Database:
    """The process's engine and session factory, created lazily on the running loop."""

    def __init__(self) -> None:
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(get_settings())
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    def forget(self) -> None:
        """Drop the engine without closing it (a forked process must not share sockets)."""
        self._engine = None
        self._sessions = None

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None


db = Database()


class UnitOfWork:
    """One transaction of one use case, plus the side effects to run once it commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, effect: AfterCommit) -> None:
        """Run `effect` only if the transaction commits (cache, pub/sub, jobs)."""
        self._after_commit.append(effect)

    async def commit(self) -> None:
        await self.session.commit()
        effects, self._after_commit = self._after_commit, []
        for effect in effects:
            try:
                await effect()
            except Exception:  # a side effect must never undo or fail a committed write
                log.exception("after_commit_failed", effect=getattr(effect, "__name__", "?"))

    async def rollback(self) -> None:
        self._after_commit.clear()
        await self.session.rollback()


@asynccontextmanager
async def unit_of_work() -> AsyncIterator[UnitOfWork]:
    """A fresh session; whatever was not committed when the block ends is rolled back."""
    async with db.sessions() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
        finally:
            await uow.rollback()


@asynccontextmanager
async def transaction() -> AsyncIterator[UnitOfWork]:
    """A unit of work that commits when the block ends normally: the commit point of the
    entry points outside HTTP (Celery tasks, the CLI, the demo seeder, test factories)."""
    async with unit_of_work() as uow:
        yield uow
        await uow.commit()


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a SQLAlchemy DBAPIError, if any."""
    orig: Any = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )


def is_lock_failure(exc: DBAPIError) -> bool:
    return sqlstate(exc) in LOCK_FAILURE_STATES


class Prepared:
    """A Core statement compiled once, at import, to PostgreSQL text with `$n` parameters.

    For the hottest queries: running the text with `exec_driver_sql` skips the per-call
    cache-key, coercion and compile work of SQLAlchemy while keeping the statement written
    as a SQLAlchemy expression (one source of truth) and inside the session's transaction.
    asyncpg then reuses its server-side prepared statement.
    """

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = compiled.string
        self._order = list(getattr(compiled, "positiontup", None) or [])
        self._constants = {
            name: value.value if isinstance(value, enum.Enum) else value
            for name, value in compiled.params.items()
            if value is not None
        }

    async def execute(self, session: AsyncSession, **params: Any) -> CursorResult[*tuple[Any, ...]]:
        values = {**self._constants, **params}
        connection = await session.connection()
        return await connection.exec_driver_sql(self.sql, tuple(values[k] for k in self._order))
