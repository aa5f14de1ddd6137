"""An API process SIGKILLed mid-storm (issue 11): two uvicorn processes behind the test's
clients, round-robin; a request that dies with the killed process is retried on the
other with the same Idempotency-Key. PostgreSQL ends the dead process's transactions
(the sockets close with it): nothing half-held, nothing booked twice, and the other
process keeps serving."""

import asyncio
import time

import httpx
import pytest

from app.models import Role
from tests import factories
from tests.conftest import record_figure
from tests.faults import scale
from tests.faults.storm import (
    Progress,
    api_clients,
    buyers,
    check_invariants,
    mixed_holds,
    replay_differences,
    run_storm,
    seat_ids_in_db,
)
from tests.servers import wait_all

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HOLDS = scale(120, 1200)
SEATS = scale(100, 600)
# Concurrent clients: as in test_postgres_faults, few enough for a loaded 2-core machine.
CLIENTS = scale(8, 12)
DEADLINE_S = scale(60, 240)  # a hold not settled by then counts as never settled
THINK = 0.1  # seconds a client waits between holds, so the short storm spans the kill
ALLOWED = {201, 409}


def transport_errors(answers: list[httpx.Response | BaseException]) -> int:
    return sum(isinstance(a, httpx.TransportError) for a in answers)


class TestApiProcessKilled:
    async def test_storm_with_one_of_two_processes_killed(self, launch_apis) -> None:
        """SIGKILL one process a third into the storm: its requests in flight die, every
        hold still settles (on the survivor) with 201 or 409, the invariants hold, every
        201 replays as it was, 0 500s, and the survivor is ready and serving after."""
        victim, survivor = launch_apis(2)
        organizer = await factories.account(Role.ORGANIZER)
        event_id = await factories.seated_event(organizer, seats=SEATS)
        seat_ids = await seat_ids_in_db(event_id)
        holds = mixed_holds(event_id, seat_ids, await buyers(HOLDS // 4), HOLDS, seed=47)
        await asyncio.to_thread(wait_all, [victim, survivor])
        async with api_clients([victim.url, survivor.url]) as clients:
            progress = Progress()
            storm = asyncio.create_task(
                run_storm(
                    clients,
                    holds,
                    concurrency=CLIENTS,
                    deadline_s=DEADLINE_S,
                    think=THINK,
                    progress=progress,
                )
            )
            await progress.reached(HOLDS // 3)
            settled_at_kill, killed_at = progress.settled, time.monotonic()
            victim.kill()
            report = await storm
            after_kill = time.monotonic() - killed_at
            record_figure(
                f"API process SIGKILLed after {settled_at_kill}/{HOLDS} holds: "
                f"{report.summary()}; {transport_errors(report.answers)} requests lost with it, "
                f"the other {HOLDS - settled_at_kill} settled in {after_kill:.1f}s after"
            )
            assert not report.server_errors, report.summary()
            assert transport_errors(report.answers) > 0  # the kill met requests
            assert {s for s in report.statuses if isinstance(s, int)} <= {*ALLOWED, 503}
            assert set(report.finals) <= ALLOWED, report.summary()
            assert survivor.server_errors() == []
            assert (await clients[1].get("/health/ready")).status_code == 200
            assert await check_invariants(event_id, report) == []
            assert await replay_differences(clients[1:], report) == []
            assert await check_invariants(event_id, report) == []  # the replays booked nothing
