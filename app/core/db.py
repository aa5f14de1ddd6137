"""Database engine, sessions, and the unit of work that runs side effects after commit."""

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from sqlalchemy import CursorResult, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import Pool
from sqlalchemy.sql.expression import ClauseElement

from app.core.config import Settings, get_settings

log = structlog.get_logger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
T = TypeVar("T")

# SQLSTATEs that mean "someone else holds what you need": lock_not_available,
# deadlock_detected, serialization_failure. They become 409s, never 500s.
LOCK_FAILURE_STATES = frozenset({"55P03", "40P01", "40001"})
UNIQUE_VIOLATION = "23505"
# The connection itself is gone, not the query: class 08 (connection exception), and the
# server ending the session: 57P01 admin_shutdown (pg_terminate_backend, a fast shutdown),
# 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or shutting down).
CONNECTION_LOST_STATES = frozenset({"57P01", "57P02", "57P03"})
# What asyncpg says when a statement or rollback meets a socket that is already closed.
CLOSED_MESSAGES = ("connection is closed", "connection was closed")


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An asyncpg engine whose every connection has short lock and statement timeouts."""
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0 if pool_size else settings.db_max_overflow,
        # Bounded: past this a request is answered 503 (app.api.errors), not queued for
        # the 30 s default while its client gives up.
        pool_timeout=settings.db_pool_timeout_s,
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
    """The process's engines and session factories, created lazily on the running loop.

    Two pools: the main one for requests and tasks, and a small one (DB_READ_POOL_SIZE)
    for what rebuilds shared, cached data (seat maps, live snapshots, seat counts). During
    a rush the bookings can take every main connection; the cache must still be rebuilt,
    or every reader is served older and older bytes.
    """

    def __init__(self) -> None:
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._read_engine: AsyncEngine | None = None
        self._read_sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def read_sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._read_sessions is None:
            settings = get_settings()
            self._read_engine = create_engine(settings, pool_size=settings.db_read_pool_size)
            self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        return self._read_sessions

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

    def pools(self) -> dict[str, Pool]:
        """The connection pools opened so far, by name: `main` and `read` (creates none)."""
        engines = {"main": self._engine, "read": self._read_engine}
        return {name: engine.pool for name, engine in engines.items() if engine is not None}

    def forget(self) -> None:
        """Drop the engines without closing them (a forked process must not share sockets)."""
        self._engine = self._read_engine = None
        self._sessions = self._read_sessions = None

    async def dispose(self) -> None:
        for engine in (self._engine, self._read_engine):
            if engine is not None:
                await engine.dispose()
        self.forget()


db = Database()


class UnitOfWork:
    """One transaction of one use case, plus the side effects to run once it commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after_commit: list[AfterCommit] = []
        self._wants_xid = False
        # The PostgreSQL transaction id this unit committed, when a side effect asked for
        # it (`want_xid`): live seat counts use it to tell whether a recount saw the change.
        self.xid: int | None = None

    def want_xid(self) -> None:
        """Read the transaction's id just before it commits (one round trip)."""
        self._wants_xid = True

    def after_commit(self, effect: AfterCommit) -> None:
        """Run `effect` only if the transaction commits (cache, pub/sub, jobs)."""
        self._after_commit.append(effect)

    async def commit(self) -> None:
        if self._wants_xid:
            self.xid = int(await self.session.scalar(text("SELECT pg_current_xact_id()::text")))
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

    async def release(self) -> None:
        """End a transaction that has only read, so its connection goes back to the pool
        now, before slow work that needs no database (a password hash); the session
        begins a new transaction if it is used again."""
        session = self.session
        if self._after_commit or session.new or session.dirty or session.deleted:
            raise RuntimeError("release() would drop uncommitted work; commit it first")
        await session.rollback()


@asynccontextmanager
async def unit_of_work(*, cache_fill: bool = False) -> AsyncIterator[UnitOfWork]:
    """A fresh session; whatever was not committed when the block ends is rolled back.
    `cache_fill`: a read that rebuilds cached data, on the small pool of its own."""
    sessions = db.read_sessions if cache_fill else db.sessions
    async with sessions() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
        finally:
            await _discard(uow)


async def _discard(uow: UnitOfWork) -> None:
    """Roll back what was not committed. On a connection that was lost there is nothing to
    roll back (the server already did): that must not become a second error, raised from
    this cleanup, that hides the first or turns a 503 into a 500."""
    try:
        await uow.rollback()
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        log.info("rollback_on_lost_connection", error=_short(exc))
        await uow.session.invalidate()


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

    async def fetch(self, session: AsyncSession, **params: Any) -> list[Any]:
        """For big results: the rows straight from asyncpg (tuple-like records), on the
        session's connection, without SQLAlchemy's per-row result handling (measured on
        a stadium's 50,000 seats: about 40 ms instead of 150-250 ms). Errors are raised as
        `execute` raises them (SQLAlchemy's DBAPIError), a lost connection invalidated."""
        values = {**self._constants, **params}
        args = [values[k] for k in self._order]
        connection = await session.connection()
        adapted: Any = (await connection.get_raw_connection()).dbapi_connection
        try:
            rows: list[Any] = await adapted.driver_connection.fetch(self.sql, *args)
        except Exception as exc:
            error = _translated(adapted, self.sql, args, exc)
            if error.connection_invalidated:
                await connection.invalidate()
            raise error from exc
        return rows


def _translated(adapted: Any, sql: str, args: list[Any], exc: Exception) -> DBAPIError:
    """An asyncpg error as SQLAlchemy would have raised it from `exec_driver_sql`."""
    try:
        adapted._handle_exception(exc)  # raises the DB-API form of `exc`
    except Exception as dbapi_error:
        error = DBAPIError.instance(
            sql,
            args,
            dbapi_error,
            adapted.dbapi.Error,
            connection_invalidated=is_connection_lost(dbapi_error),
        )
        assert isinstance(error, DBAPIError)  # `dbapi_error` is a DB-API error
        return error
    raise AssertionError("unreachable")  # pragma: no cover


def is_connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the database connection failed (killed, closed, refused, server
    restarting), not that a statement was wrong: the request may be retried as it is.
    Understands SQLAlchemy's errors, the DB-API errors they wrap, and asyncpg's own."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    wrapped = isinstance(exc, DBAPIError)  # what it wraps came from the driver
    return any(_lost(error, wrapped) for error in _causes(exc))


def _lost(error: BaseException, from_driver: bool) -> bool:
    state = getattr(error, "sqlstate", None) or ""
    if state.startswith("08") or state in CONNECTION_LOST_STATES:
        return True
    # A refused or reset socket while connecting (PostgreSQL down or restarting; asyncpg
    # joins one error per address into a plain OSError).
    if isinstance(error, ConnectionError):
        return True
    if isinstance(error, OSError):
        return "Connect call failed" in str(error)
    from_driver = from_driver or type(error).__module__.startswith(("asyncpg", "sqlalchemy"))
    return from_driver and any(text in str(error) for text in CLOSED_MESSAGES)


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc`, the DB-API error it wraps (`orig`), what caused that, and so on."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return chain


async def retry_read_once(
    read: Callable[[], Awaitable[T]], before_retry: Callable[[], Awaitable[None]] | None = None
) -> T:
    """Run the read-only `read()`, and once more if the connection was lost under it (a
    killed backend, a restarted server): the pool invalidates connections older than the
    failure, so the second attempt gets a fresh one. `before_retry` resets state the first
    attempt left behind (roll back a session that `read` shares). Never for writes: a
    write whose connection was lost may or may not have committed."""
    try:
        return await read()
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        log.warning("read_retried_after_lost_connection", error=_short(exc))
    if before_retry is not None:
        await before_retry()
    return await read()


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc)[:200]
