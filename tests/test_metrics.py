"""GET /metrics: figures checked after real traffic, in-process (default registry) and
across two uvicorn workers and a Celery worker sharing PROMETHEUS_MULTIPROC_DIR."""

import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import DBAPIError

from app.api import metrics as request_metrics
from app.api.metrics import MetricsMiddleware
from app.core.config import get_settings
from app.core.errors import Conflict
from app.core.redis import redis
from app.models import Role
from app.services import inventory
from app.services import metrics as service
from tests import factories
from tests.conftest import record_figure
from tests.jobpath import WORKER_ENV, scalar, send
from tests.servers import ApiProcess, WorkerProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SEATS = "/events/{event_id}/seats"


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


class Delta:
    """The difference of one sample between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


async def hold(client: httpx.AsyncClient, buyer: factories.Account, **body: Any) -> httpx.Response:
    return await client.post("/bookings/", json=body, headers=buyer.headers)


class TestScrapeAfterTraffic:
    async def test_requests_holds_refusals_cache_and_seats(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(service, "SNAPSHOT_TTL_S", 0.0)  # read the seats afresh
        organizer = await factories.account(Role.ORGANIZER)
        one, two = await factories.account(), await factories.account()
        event_id = await factories.seated_event(organizer, seats=20)
        before = await scrape(client)

        first = await client.get(f"/events/{event_id}/seats")  # a miss: FastAPI builds it
        ids = [seat["id"] for seat in first.json()["seats"]]
        held = await hold(client, one, event_id=event_id, seat_ids=ids[:2])
        assert held.status_code == 201
        taken = await hold(client, two, event_id=event_id, seat_ids=[ids[1]])
        too_many = await hold(client, two, event_id=event_id, quantity=19)
        over_cap = await hold(client, one, event_id=event_id, quantity=9)
        assert [r.json()["code"] for r in (taken, too_many, over_cap)] == [
            "seats_unavailable",
            "not_enough_seats",
            "seat_limit_exceeded",
        ]
        assert (await hold(client, two, event_id=event_id, seat_ids=[ids[5]])).status_code == 201
        confirm = f"/bookings/{held.json()['id']}/confirm"
        assert (await client.post(confirm, headers=one.headers)).status_code == 200
        stale = await client.get(f"/events/{event_id}/seats")  # cached, stale: rebuilt here
        fresh = await client.get(f"/events/{event_id}/seats")  # cached and fresh
        assert stale.headers["x-cache"] == fresh.headers["x-cache"] == "hit"  # the fast path
        assert (await client.get(f"/nowhere/{event_id}")).status_code == 404
        after = await scrape(client)
        delta = Delta(before, after)

        requests = "evently_http_requests_total"
        assert delta(requests, method="GET", route=SEATS, status="200") == 3
        assert delta(requests, method="POST", route="/bookings/", status="201") == 2
        assert delta(requests, method="POST", route="/bookings/", status="409") == 3
        assert delta(requests, method="GET", route="unmatched", status="404") == 1
        confirm_route = "/bookings/{booking_id}/confirm"
        assert delta(requests, method="POST", route=confirm_route, status="200") == 1
        latency = "evently_http_request_duration_seconds_count"
        assert delta(latency, method="GET", route=SEATS) == 3
        assert delta(latency, method="POST", route="/bookings/") == 5
        assert delta(latency, method="POST", route=confirm_route) == 1
        routes = {dict(labels).get("route", "") for name, labels in after if name == requests}
        assert not [r for r in routes if re.search(r"/\d", r)], routes  # templates only

        for reason in ("seats_unavailable", "not_enough_seats", "seat_limit_exceeded"):
            assert delta("evently_holds_refused_total", reason=reason) == 1
            assert delta("evently_errors_total", code=reason) == 1
        cache = "evently_cache_requests_total"
        assert delta(cache, view="seats", result="miss") == 1
        assert delta(cache, view="seats", result="rebuild") == 1
        assert delta(cache, view="seats", result="fresh") == 1

        seats = {
            state: value(after, "evently_event_seats", event_id=str(event_id), state=state)
            for state in ("available", "held", "booked")
        }
        assert seats == {"available": 17, "held": 1, "booked": 2}
        pending = await scalar("SELECT count(*) FROM outbox WHERE done_at IS NULL")
        assert pending
        assert value(after, "evently_outbox_pending_jobs") == pending
        assert 0 <= value(after, "evently_outbox_oldest_pending_age_seconds") < 60

    async def test_not_in_the_openapi_document(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/metrics" not in paths
        assert SEATS in paths

    async def test_fast_path_templates_are_the_routes(self, client: httpx.AsyncClient) -> None:
        """The fast paths' requests are labelled as FastAPI labels the same routes."""
        paths = (await client.get("/openapi.json")).json()["paths"]
        fast = {*request_metrics.VIEW_TEMPLATES.values(), *request_metrics.QUEUE_TEMPLATES.values()}
        assert fast <= set(paths)

    async def test_lock_failures_by_kind(self, client: httpx.AsyncClient) -> None:
        class LockNotAvailable(Exception):
            sqlstate = "55P03"

        before = await scrape(client)
        with pytest.raises(Conflict), inventory.contention(lambda: Conflict("busy")):
            raise DBAPIError("SELECT ... FOR UPDATE", {}, LockNotAvailable())
        delta = Delta(before, await scrape(client))
        assert delta("evently_lock_failures_total", kind="lock_timeout") == 1

    async def test_pool_and_redis_breaker(self, client: httpx.AsyncClient) -> None:
        up = await scrape(client)
        assert value(up, "evently_db_pool_size", pool="main") == get_settings().db_pool_size
        assert value(up, "evently_db_pool_in_use", pool="main") >= 0
        assert ("evently_db_pool_waiting", (("pool", "main"),)) in up
        assert value(up, "evently_redis_up", client="main") == 1
        redis._failed(ConnectionError("refused"))  # the breaker opens, as on an outage
        try:
            assert value(await scrape(client), "evently_redis_up", client="main") == 0
        finally:
            await redis.use(redis.url)  # closed again

    async def test_token_restricts_the_scrape(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(get_settings(), "metrics_token", "s3cret-scraper")
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer s3cret-scraper"}
        assert (await client.get("/metrics", headers=right)).status_code == 200


async def _noop(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_middleware_costs_a_few_microseconds() -> None:
    """100,000 requests of a timed route (counter and histogram), against the bare app."""

    class Route:
        path = "/bookings/"

    scope = {"type": "http", "method": "POST", "path": "/bookings/", "route": Route()}

    async def send(_: Any) -> None:
        return None

    async def timed(app: Any, n: int = 100_000) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await app(scope, None, send)
        return (time.perf_counter() - started) / n

    overhead = await timed(MetricsMiddleware(_noop)) - await timed(_noop)
    record_figure(f"metrics middleware: {overhead * 1e6:.1f} µs per request (in-process)")
    assert overhead < 25e-6


# -- several processes: two uvicorn workers and a Celery worker, one metrics directory ----


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus")


@pytest.fixture(scope="module")
def processes(
    metrics_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiProcess, WorkerProcess]]:
    """`uvicorn --workers 2` and a Celery worker, all writing to `metrics_dir`; started
    together (their imports overlap)."""
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = tmp_path_factory.mktemp("api") / "api.log"
    api = ApiProcess(env=shared, workers=2, log_path=log)
    worker = WorkerProcess(env={**WORKER_ENV, **shared})
    api.launch()
    try:
        worker.start()
        api.wait_ready()
        yield api, worker
    finally:
        worker.stop()
        api.stop()


async def settled() -> None:
    """Wait until every worker has added its latest requests to its file (each does so
    every second, and the one answering a scrape at once: app.api.metrics.Tally)."""
    await asyncio.sleep(service.SAMPLE_EVERY_S + 0.5)


FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)  # any worker may answer each


async def scrape_url(url: str) -> Samples:
    async with httpx.AsyncClient(base_url=url, limits=FRESH_CONNECTIONS) as fresh:
        return await scrape(fresh)


def per_process(metrics_dir: Path, tmp: Path, route: str) -> dict[str, float]:
    """What each process's own file says of `route` (one file per pid)."""
    found = {}
    for file in metrics_dir.glob("counter_*.db"):
        alone = tmp / file.stem
        alone.mkdir(parents=True)
        shutil.copy(file, alone)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        samples = parse_registry(registry)
        found[file.stem] = sum(
            v
            for (name, labels), v in samples.items()
            if name == "evently_http_requests_total" and dict(labels)["route"] == route
        )
    return found


def parse_registry(registry: CollectorRegistry) -> Samples:
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


class TestMultiprocess:
    async def test_counters_add_up_across_two_uvicorn_workers(
        self, processes: tuple[ApiProcess, WorkerProcess], metrics_dir: Path, tmp_path: Path
    ) -> None:
        two_workers = processes[0]
        key = {"method": "GET", "route": "/health", "status": "200"}
        await settled()  # the readiness probes' counts are in the files
        base = value(await scrape_url(two_workers.url), "evently_http_requests_total", **key)
        sent = 0
        async with httpx.AsyncClient(base_url=two_workers.url, limits=FRESH_CONNECTIONS) as c:
            for _ in range(5):  # until both workers answered some (the kernel picks)
                answers = await asyncio.gather(*(c.get("/health") for _ in range(40)))
                assert all(r.status_code == 200 for r in answers)
                sent += 40
                await settled()
                counts = per_process(metrics_dir, tmp_path / str(sent), "/health")
                if sum(1 for n in counts.values() if n > 0) >= 2:
                    break
        assert sum(1 for n in counts.values() if n > 0) >= 2, counts
        assert sum(counts.values()) == base + sent
        for _ in range(6):  # whichever worker answers the scrape, it reports the sum
            scraped = await scrape_url(two_workers.url)
            assert value(scraped, "evently_http_requests_total", **key) == base + sent

    async def test_celery_task_outcomes_show_on_the_api(
        self, processes: tuple[ApiProcess, WorkerProcess]
    ) -> None:
        url = processes[0].url
        label = {"task": "evently.relay_outbox", "outcome": "success"}
        before = value(await scrape_url(url), "evently_celery_tasks_total", **label)
        await send("evently.relay_outbox")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            scraped = await scrape_url(url)
            if value(scraped, "evently_celery_tasks_total", **label) > before:
                break
            await asyncio.sleep(0.2)
        assert value(scraped, "evently_celery_tasks_total", **label) == before + 1
        duration = "evently_celery_task_duration_seconds_count"
        assert value(scraped, duration, task="evently.relay_outbox") >= 1
