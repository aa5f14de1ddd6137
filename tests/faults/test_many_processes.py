"""Many processes on one PostgreSQL and Redis: two uvicorn API processes and one worker.

A storm split across both APIs keeps the booking invariants; an Idempotency-Key sent to
both books once and replays the same response; a live client on API A sees every change
made through API B, in sequence order, and ends with the database's seat map; the jobs
the confirms queue (through either API) run once on the one worker.
"""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from app.core.db import db
from app.models import Role
from tests import factories
from tests.conftest import record_figure
from tests.faults import scale
from tests.faults.live import LiveFollower, converges, differences, seats_in_database
from tests.faults.storm import api_clients, check_invariants, mixed_holds, run_storm, seat_ids_of
from tests.jobpath import WORKER_ENV, eventually, jobs_done
from tests.servers import ApiProcess, WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HOLDS = scale(160, 1000)
SEATS = scale(200, 800)
CLIENTS = 12  # six per API: under each one's pool (see test_redis_faults.API_ENV)
API_ENV = {"RATE_LIMIT_ENABLED": "false", "DB_POOL_SIZE": "8", "DB_MAX_OVERFLOW": "4"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ApiProcess, ApiProcess, WorkerProcess]]:
    a, b = ApiProcess(env=API_ENV), ApiProcess(env=API_ENV)
    worker = WorkerProcess(env=WORKER_ENV)
    processes = [a, b, worker]

    try:
        # In parallel: each takes seconds to import the app and bind.
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda p: p.start(), processes))
        yield a, b, worker
    finally:
        for process in processes:
            process.stop()


async def test_storm_across_two_apis_with_a_live_client_on_one(cluster) -> None:
    a, b, _ = cluster
    organizer = await factories.account(Role.ORGANIZER)
    buyers = [await factories.account() for _ in range(40)]
    event_id = await factories.seated_event(organizer, seats=SEATS)
    async with api_clients([a.url, b.url]) as (on_a, on_b):
        seat_ids = await seat_ids_of(on_a, event_id)
        holds = mixed_holds(event_id, seat_ids, buyers, HOLDS, seed=47)
        async with connect(a.url.replace("http", "ws") + f"/events/{event_id}/live") as ws:
            follower = LiveFollower(ws)
            following = asyncio.create_task(follower.run())
            await follower.first_snapshot()
            # Odd holds go to B first, even ones to A (a retry goes to the other).
            report = await run_storm([on_a, on_b], holds, concurrency=CLIENTS, deadline_s=90)
            won = [r for r in report.responses if r.status_code == 201]
            for answer in won[:10]:  # confirms through B: jobs queued by a process of B
                headers = {"Authorization": answer.request.headers["Authorization"]}
                done = await on_b.post(f"/bookings/{answer.json()['id']}/confirm", headers=headers)
                assert done.status_code == 200, done.text
            live_s = await converges(follower, event_id, within=10)
            truth = await seats_in_database(event_id)
            following.cancel()
        await eventually(jobs_done, within=20)
    notified = await _scalar("SELECT count(*) FROM notifications WHERE kind = 'booking_confirmed'")
    record_figure(
        f"two APIs and a worker: {report.summary()}; live client on A: "
        f"{follower.applied} changes applied in order, {len(follower.gaps)} gaps, "
        f"{len(follower.snapshots)} snapshots (1 + resyncs); "
        f"{notified} notifications for 10 confirms"
    )
    assert not report.server_errors
    assert await check_invariants(event_id, report) == []
    assert {r.request.url.port for r in report.answers if isinstance(r, httpx.Response)} == {
        a.port,
        b.port,
    }
    assert live_s is not None, f"the client on A missed changes: {differences(follower, truth)}"
    # Every change of B reached A in seq order: the client never saw a gap. A change that
    # an API could not announce (Redis slow on a busy machine) starts a new epoch, which
    # the server answers with a fresh snapshot: counted, allowed.
    assert follower.gaps == []
    assert notified == 10


async def test_one_key_sent_to_both_apis_books_once(cluster) -> None:
    a, b, _ = cluster
    organizer, buyer = await factories.account(Role.ORGANIZER), await factories.account()
    event_id = await factories.seated_event(organizer, seats=20)
    body = {"event_id": event_id, "quantity": 2}
    headers = {**buyer.headers, "Idempotency-Key": "one-key-two-processes"}
    async with api_clients([a.url, b.url]) as (on_a, on_b):
        # At the same moment: one claims the key, the other waits for it (or is told the
        # first is still in progress, and retries as a client does).
        first = await asyncio.gather(
            *(c.post("/bookings/", json=body, headers=headers) for c in (on_a, on_b))
        )
        pairs = zip((on_a, on_b), first, strict=True)
        answers = [await _settled(c, body, headers, r) for c, r in pairs]
        again = [await c.post("/bookings/", json=body, headers=headers) for c in (on_b, on_a)]
    assert {r.status_code for r in answers + again} == {201}
    assert len({r.content for r in answers + again}) == 1  # the same response, replayed
    booked = await _scalar("SELECT count(*) FROM bookings WHERE user_id = :u", u=buyer.id)
    assert booked == 1


async def _settled(
    client: httpx.AsyncClient, body: dict[str, object], headers: dict[str, str], r: httpx.Response
) -> httpx.Response:
    for _ in range(20):
        if r.status_code != 409:
            return r
        await asyncio.sleep(0.1)
        r = await client.post("/bookings/", json=body, headers=headers)
    return r


async def _scalar(sql: str, **params: object) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text(sql), params))  # type: ignore[arg-type]
