"""Crashes on the job path: a worker killed mid-job, a broker down at commit time.

No worker runs between these tests: each starts the ones it needs.
"""

import asyncio

import pytest

from app.core.queue import RUN_JOB
from tests.jobpath import (
    WORKER_ENV,
    confirmed_booking,
    eventually,
    jobs_done,
    notifications,
    notifications_at_least,
    own_broker,
    scalar,
    send,
)
from tests.servers import WorkerProcess

__all__ = ["own_broker"]  # the module's broker fixture

pytestmark = pytest.mark.slow


class TestCrashes:
    async def test_worker_killed_mid_job_runs_it_again_once(self, client) -> None:
        slow = WorkerProcess(env={**WORKER_ENV, "NOTIFICATION_DELAY_MS": "4000"})
        slow.start()
        try:
            seen = len(slow.log())
            buyer, _, _ = await confirmed_booking(client)
            slow.wait_for_log(f"Task {RUN_JOB}", after=seen)  # received: now in the slow send
            await asyncio.sleep(0.5)
            slow.kill()
        finally:
            slow.stop()
        assert await notifications(buyer.id, "booking_confirmed") == 0
        assert not await jobs_done()
        again = WorkerProcess(env=WORKER_ENV)
        again.start()
        try:
            await asyncio.sleep(2.5)  # past OUTBOX_RETRY_AFTER_S: the job counts as stuck
            await send("evently.relay_outbox")
            await eventually(lambda: notifications_at_least(buyer.id, "booking_confirmed", 1))
            await asyncio.sleep(4)  # the broker's own redelivery (visibility timeout 3 s) too
            await eventually(jobs_done)
        finally:
            again.stop()
        assert await notifications(buyer.id, "booking_confirmed") == 1


class TestBrokerOutage:
    async def test_job_queued_while_broker_down_runs_when_it_is_back(
        self, client, own_broker
    ) -> None:
        own_broker.stop()
        buyer, _, _ = await confirmed_booking(client)  # the commit happens; the send fails
        assert await scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1
        own_broker.start()
        worker = WorkerProcess(env={**WORKER_ENV, "CELERY_BROKER_URL": own_broker.url})
        worker.start()
        try:
            await send("evently.relay_outbox")
            await eventually(lambda: notifications_at_least(buyer.id, "booking_confirmed", 1))
            await eventually(jobs_done)
        finally:
            worker.stop()
        assert await notifications(buyer.id, "booking_confirmed") == 1
