"""Data safety: scripts/backup.sh and scripts/restore.sh, run as an operator runs them.

A database seeded through the API (confirmed, pending, cancelled and waitlist bookings,
tickets, a waiting entry, notifications and jobs) is backed up with the script, restored
into a second, empty database, and must come back whole: the same rows in every table,
the same sequence positions (new rows must not collide with restored ones), the same
Alembic revision, and every invariant of `tests.invariants` still true.
"""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Role
from tests import factories
from tests.conftest import TEST_DATABASE, TEST_DATABASE_URL, _plain_dsn, record_figure
from tests.invariants import violations

ROOT = Path(__file__).resolve().parent.parent
RESTORED = f"{TEST_DATABASE}_restored"
CAP = 10  # the default per-user cap (the invariant check takes it)


async def script(*args: str, database_url: str | None = None) -> tuple[int, str]:
    """Run one of scripts/*.sh; its exit status and what it printed (both streams)."""
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(TEST_DATABASE_URL, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def restored() -> AsyncIterator[str]:
    """An empty database next to the test database (named after it); dropped afterwards."""
    await admin(f'DROP DATABASE IF EXISTS "{RESTORED}" WITH (FORCE)')
    await admin(f'CREATE DATABASE "{RESTORED}"')
    yield _plain_dsn(TEST_DATABASE_URL, RESTORED)
    await admin(f'DROP DATABASE IF EXISTS "{RESTORED}" WITH (FORCE)')


async def seed(client: httpx.AsyncClient) -> None:
    """Bookings in every state, tickets, a waitlist offer and a waiting entry."""
    organizer = await factories.account(Role.ORGANIZER)
    ann, bob, cat = [await factories.account() for _ in range(3)]
    seated = await factories.seated_event(organizer, seats=10)
    ga = await factories.event(organizer, factories.ga_spec(capacity=3))

    async def hold(who: factories.Account, body: dict[str, object]) -> int:
        r = await client.post("/bookings/", json=body, headers=who.headers)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    async def post(who: factories.Account, url: str, body: object = None) -> None:
        r = await client.post(url, json=body, headers=who.headers)
        assert r.status_code in (200, 201), r.text

    confirmed = await hold(ann, {"event_id": seated, "quantity": 3})
    await post(ann, f"/bookings/{confirmed}/confirm", {"payment_token": "tok_visa"})
    await hold(bob, {"event_id": seated, "quantity": 2})  # stays pending
    await post(cat, f"/bookings/{await hold(cat, {'event_id': seated, 'quantity': 1})}/cancel")
    released = await hold(ann, {"event_id": ga, "quantity": 2})
    await hold(cat, {"event_id": ga, "quantity": 1})  # sold out
    await post(bob, "/waitlist/join", {"event_id": ga, "quantity": 2})
    await post(cat, "/waitlist/join", {"event_id": seated, "quantity": 6})  # 5 free: waits
    await post(ann, f"/bookings/{released}/cancel")  # bob is offered ann's two seats


async def snapshot(dsn: str) -> dict[str, object]:
    """Rows per table, sequence positions, the Alembic revision, broken invariants."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows = {
            t["tablename"]: await conn.fetchval(f'SELECT count(*) FROM "{t[0]}"') for t in tables
        }
        sequences = dict(await conn.fetch("SELECT sequencename, last_value FROM pg_sequences"))
        revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as sa:
            broken = await violations(sa, CAP)
    finally:
        await engine.dispose()
    return {"rows": rows, "sequences": sequences, "revision": revision, "broken": broken}


class TestBackupAndRestore:
    async def test_a_seeded_database_comes_back_whole(
        self, client: httpx.AsyncClient, restored: str, tmp_path: Path
    ) -> None:
        await seed(client)
        source = TEST_DATABASE_URL.render_as_string(hide_password=False)  # +asyncpg: as set
        original = await snapshot(_plain_dsn(TEST_DATABASE_URL, TEST_DATABASE))
        assert original["broken"] == []
        file = tmp_path / "evently.dump"
        started = time.monotonic()
        status, out = await script("scripts/backup.sh", str(file), database_url=source)
        assert status == 0, out
        backed_up = time.monotonic()
        status, out = await script("scripts/restore.sh", str(file), restored)
        assert status == 0, out
        copy = await snapshot(restored)
        assert copy == original
        rows = original["rows"]
        assert isinstance(rows, dict)
        assert (rows["tickets"], rows["waitlist_entries"]) == (3, 2)
        record_figure(
            f"backup/restore: {sum(rows.values())} rows in {len(rows)} tables, "
            f"{file.stat().st_size // 1024} KiB, backup {backed_up - started:.2f} s, "
            f"restore {time.monotonic() - backed_up:.2f} s"
        )

    async def test_restore_refuses_without_a_backup(self, restored: str, tmp_path: Path) -> None:
        status, out = await script("scripts/restore.sh")
        assert status != 0
        assert "give the FILE" in out
        status, out = await script("scripts/restore.sh", str(tmp_path / "missing.dump"), restored)
        assert status != 0
        assert "no readable backup file" in out
        junk = tmp_path / "junk.dump"
        junk.write_text("not a backup")
        status, out = await script("scripts/restore.sh", str(junk), restored)
        assert status != 0
        assert "is not a backup" in out
