"""The job path under a storm of confirms: a worker SIGKILLed mid-job, a broker down and back.

Every confirm queues a confirmation notification through the outbox. Whatever breaks,
each job must run exactly once: one notification per confirmed booking, none lost, none
twice, and no job left undone. `tests/test_worker_crashes.py` has the single-job forms.
"""

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import text

from app.core.db import db
from app.core.queue import RUN_JOB
from app.models import Role
from tests import factories
from tests.conftest import TEST_REDIS_URL, record_figure
from tests.faults import scale
from tests.jobpath import WORKER_ENV, own_broker, scalar, send, use_broker
from tests.servers import WorkerProcess

__all__ = ["own_broker"]  # the module's broker fixture

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CONFIRMS = scale(20, 200)
KILLS = scale(1, 3)
CLIENTS = 8
SLOW_JOBS = {**WORKER_ENV, "NOTIFICATION_DELAY_MS": "150"}  # a kill lands inside a job

PER_BOOKING = text(
    """
    SELECT b.id, count(n.id)
    FROM bookings b LEFT JOIN notifications n
      ON n.user_id = b.user_id AND n.kind = 'booking_confirmed'
    WHERE b.status = 'confirmed'
    GROUP BY b.id
    """
)


@pytest.fixture(autouse=True)
def open_broker_pools() -> None:
    """Producer pools that are open. kombu keeps one per broker URL, process-wide: a test
    that switched to a broker of its own and back (`use_broker`) closed the test Redis's,
    and kombu would hand it out again, closed ("Acquire on closed pool")."""
    use_broker(TEST_REDIS_URL)  # resets kombu's pools


@dataclass
class Confirms:
    """Held bookings of distinct buyers, confirmed by CLIENTS clients at once."""

    bookings: list[tuple[int, dict[str, str]]]
    statuses: dict[int, int] = field(default_factory=dict)
    answered: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, client: httpx.AsyncClient) -> None:
        queue = list(self.bookings)

        async def confirm_loop() -> None:
            while queue:
                booking_id, headers = queue.pop()
                answer = await client.post(f"/bookings/{booking_id}/confirm", headers=headers)
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                self.answered += 1
                self.progress.set()

        await asyncio.gather(*(confirm_loop() for _ in range(CLIENTS)))

    async def reached(self, share: float) -> None:
        while self.answered < share * len(self.bookings):
            self.progress.clear()
            await self.progress.wait()


async def held_bookings(client: httpx.AsyncClient, n: int) -> Confirms:
    """`n` buyers, each holding one or two seats of one general-admission event."""
    organizer = await factories.account(Role.ORGANIZER)
    event_id = await factories.event(organizer, factories.ga_spec(capacity=2 * n))
    bookings = []
    for i in range(n):
        buyer = await factories.account()
        body = {"event_id": event_id, "quantity": 1 + i % 2}
        held = await client.post("/bookings/", json=body, headers=buyer.headers)
        assert held.status_code == 201, held.text
        bookings.append((held.json()["id"], buyer.headers))
    return Confirms(bookings)


async def relay_until_done(within: float) -> float:
    """Send the relay task (what beat does every few seconds) until every job is done;
    returns how long that took."""
    started = time.monotonic()
    relayed = 0.0
    while time.monotonic() - started < within:
        if await scalar("SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0:
            return time.monotonic() - started
        if time.monotonic() - relayed >= 1.0:
            await send("evently.relay_outbox")
            relayed = time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"jobs still undone after {within}s")


async def deliver_every_job_again(worker: WorkerProcess) -> None:
    """A duplicate delivery of every job (as the broker's redelivery of a killed worker's
    job, or a relay racing it, would make): each must find its job done."""
    async with db.engine.connect() as conn:
        job_ids = list(await conn.scalars(text("SELECT id FROM outbox")))
    seen = len(worker.log())
    for job_id in job_ids:
        await send(RUN_JOB, job_id)
    for _ in range(300):
        if worker.log()[seen:].count(" succeeded in ") >= len(job_ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the duplicate deliveries did not all run")


async def once_per_booking() -> dict[int, int]:
    """Confirmed booking -> notifications of its buyer (each buyer has one booking)."""
    async with db.engine.connect() as conn:
        return dict((await conn.execute(PER_BOOKING)).all())  # type: ignore[arg-type]


def mid_job(worker: WorkerProcess, since: int) -> bool:
    """Whether the worker started after `since` has received more jobs than it finished."""
    log = worker.log()[since:]
    return log.count(" received") > log.count(" succeeded in ")


async def job_running(worker: WorkerProcess, since: int, within: float) -> bool:
    """Wait (up to `within`) until the worker is inside a job; False if it never was."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if mid_job(worker, since):
            await asyncio.sleep(0.05)  # well inside the 150 ms job
            return True
        await asyncio.sleep(0.02)
    return False


async def test_worker_killed_mid_job_during_a_storm_of_confirms(client) -> None:
    confirms = await held_bookings(client, CONFIRMS)
    worker = WorkerProcess(env=SLOW_JOBS)
    worker.start()
    kills, killed_mid_job = 0, 0
    storm = asyncio.create_task(confirms.run(client))
    try:
        started = 0
        for round_ in range(KILLS):
            await confirms.reached((round_ + 1) / (KILLS + 1))
            killed_mid_job += await job_running(worker, started, within=10)
            worker.kill()
            kills += 1
            started = len(worker.log())
            worker.start()
        await storm
        relay_s = await relay_until_done(within=60)
        await deliver_every_job_again(worker)
    finally:
        storm.cancel()  # done by now, unless the test failed: not on a closed client
        worker.stop()
    counts = await once_per_booking()
    record_figure(
        f"worker SIGKILLed mid-job during {CONFIRMS} confirms: {kills} kills "
        f"({killed_mid_job} with a job running), confirms {confirms.statuses}, every job "
        f"done {relay_s:.1f}s after the storm; notifications per booking "
        f"{sorted(set(counts.values()))}"
    )
    assert confirms.statuses == {200: CONFIRMS}
    assert killed_mid_job >= 1  # at least one kill hit a running job
    assert len(counts) == CONFIRMS
    assert set(counts.values()) == {1}, {b: n for b, n in counts.items() if n != 1}


async def test_broker_down_and_back_during_a_storm_of_confirms(client, own_broker) -> None:
    confirms = await held_bookings(client, CONFIRMS)
    worker = WorkerProcess(env={**WORKER_ENV, "CELERY_BROKER_URL": own_broker.url})
    worker.start()
    try:
        storm = asyncio.create_task(confirms.run(client))
        await confirms.reached(1 / 3)
        own_broker.stop()
        stopped = time.monotonic()
        await confirms.reached(2 / 3)
        unsent = await scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        await asyncio.to_thread(own_broker.start)
        down_s = time.monotonic() - stopped
        await storm
        relay_s = await relay_until_done(within=60)
    finally:
        worker.stop()
    counts = await once_per_booking()
    record_figure(
        f"broker down {down_s:.1f}s during {CONFIRMS} confirms: confirms {confirms.statuses}, "
        f"{unsent} jobs unsent while it was down, every job done {relay_s:.1f}s after the "
        f"storm; notifications per booking {sorted(set(counts.values()))}"
    )
    assert confirms.statuses == {200: CONFIRMS}
    assert int(unsent) > 0  # type: ignore[call-overload]  # the outage did hit the job path
    assert len(counts) == CONFIRMS
    assert set(counts.values()) == {1}, {b: n for b, n in counts.items() if n != 1}
