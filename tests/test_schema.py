"""The schema comes from Alembic alone: models and migrations agree, and downgrades work."""

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL
from tests.migrations import check, downgrade, upgrade

SCRATCH = "evently_migrations_test"


async def _recreate(name: str) -> None:
    admin = TEST_DATABASE_URL.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


@pytest.fixture(scope="module")
def scratch_url() -> str:
    asyncio.run(_recreate(SCRATCH))
    return TEST_DATABASE_URL.set(database=SCRATCH).render_as_string(hide_password=False)


class TestMigrations:
    def test_models_and_migrations_agree(self, database: str) -> None:
        check(database)  # `alembic check`: raises if autogenerate would emit anything

    def test_upgrade_downgrade_upgrade(self, scratch_url: str) -> None:
        upgrade(scratch_url)
        tables = asyncio.run(_tables(scratch_url))
        assert {"users", "events", "seats", "bookings", "booking_seats", "tickets"} <= tables
        downgrade(scratch_url, "base")
        assert asyncio.run(_tables(scratch_url)) == {"alembic_version"}
        upgrade(scratch_url)
        check(scratch_url)

    def test_partial_unique_index_backstops_double_claims(self, scratch_url: str) -> None:
        async def attempt() -> None:
            url = (
                make_url(scratch_url)
                .set(drivername="postgresql")
                .render_as_string(hide_password=False)
            )
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(
                    """
                    INSERT INTO users (email, full_name, password_hash, role, is_active)
                      VALUES ('u@example.com', '', 'x', 'customer', true);
                    INSERT INTO events (organizer_id, name, description, venue, category, starts_at,
                                        status, seating, total_capacity)
                      VALUES (1, 'e', '', 'v', 'c', now(), 'published', 'seated', 1);
                    INSERT INTO seats (event_id, section, row, number, label, price_cents, status)
                      VALUES (1, 'A', '1', 1, 'A-1-1', 100, 'available');
                    INSERT INTO bookings (user_id, event_id, status, total_cents, source)
                      VALUES (1, 1, 'pending', 100, 'direct'), (1, 1, 'pending', 100, 'direct');
                    INSERT INTO booking_seats (booking_id, seat_id, price_cents, active)
                      VALUES (1, 1, 100, false), (2, 1, 100, true);
                    """
                )
                with pytest.raises(asyncpg.UniqueViolationError):
                    await conn.execute(
                        "INSERT INTO booking_seats (booking_id, seat_id, price_cents, active)"
                        " VALUES (1, 1, 100, true)"
                    )
            finally:
                await conn.close()

        asyncio.run(attempt())
