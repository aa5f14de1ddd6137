"""Request metrics, counted by a plain ASGI middleware around everything `app.main.serve`
builds, so that the answers of the fast paths (cached reads, the waiting room), the body
limit and CORS are counted as well as FastAPI's.

Requests are labelled by route template (`/events/{event_id}/seats`), never by raw path:
FastAPI leaves the matched route in the scope; the fast paths are recognised with their
own matchers; anything else is `unmatched`. The counts are kept in plain dicts and added to
the Prometheus metrics once a second (`Tally`): a request costs about a microsecond here
(see tests/test_metrics.py), not the several of two locked, memory-mapped increments.
"""

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import fastpath, queuepath
from app.core import metrics
from app.infra.cache import EventView
from app.services import metrics as service

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The routes the fast paths answer before FastAPI, as FastAPI's routes spell them.
VIEW_TEMPLATES = {
    EventView.DETAIL: "/events/{event_id}",
    EventView.SEATS: "/events/{event_id}/seats",
    EventView.STATUS: "/events/{event_id}/status",
}
QUEUE_TEMPLATES = {"join": "/events/{event_id}/queue", "poll": "/events/{event_id}/queue/me"}
# Latency histograms only for these: a histogram per route would multiply the series.
TIMED = frozenset(
    {
        ("POST", "/bookings/"),
        ("POST", "/bookings/{booking_id}/confirm"),
        ("GET", VIEW_TEMPLATES[EventView.SEATS]),
        ("GET", VIEW_TEMPLATES[EventView.DETAIL]),
        ("GET", VIEW_TEMPLATES[EventView.STATUS]),
        ("POST", QUEUE_TEMPLATES["join"]),
        ("GET", QUEUE_TEMPLATES["poll"]),
    }
)


def template(scope: Scope) -> str:
    """The route template a request was answered by (after it was answered)."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    method, path = scope["method"], scope["path"]
    if method == "GET":
        cached = fastpath.parse(path)
        if cached is not None:
            return VIEW_TEMPLATES[cached[1]]
    queued = queuepath.match(method, path)
    return QUEUE_TEMPLATES[queued[0]] if queued is not None else UNMATCHED


class Tally:
    """This process's request counts in plain dicts (a dict update per request), added to
    the Prometheus metrics by `flush`: every second, before a scrape, and at exit. A
    process killed outright loses at most its last second of counts."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # Per timed route: the count of each histogram bucket, then the sum of the times.
        self.latency: dict[tuple[str, str], list[float]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if (method, route) in TIMED:
            slots = self.latency.get((method, route))
            if slots is None:
                slots = self.latency[method, route] = [0.0] * (len(BOUNDS) + 2)
            slots[bisect.bisect_left(BOUNDS, seconds)] += 1  # as Histogram.observe picks
            slots[-1] += seconds

    def flush(self) -> None:
        requests, self.requests = self.requests, {}
        for key, count in requests.items():
            metrics.child(metrics.HTTP_REQUESTS, *key).inc(count)
        latency, self.latency = self.latency, {}
        for route, slots in latency.items():
            histogram = metrics.child(metrics.HTTP_LATENCY, *route)
            # Many observations at once: prometheus-client (pinned) has no public call
            # for that, so its bucket and sum values are added to directly.
            for bucket, observed in zip(histogram._buckets, slots[:-1], strict=True):
                if observed:
                    bucket.inc(observed)
            histogram._sum.inc(slots[-1])


BOUNDS = metrics.LATENCY_BUCKETS  # the +Inf bucket is the one after them
tally = Tally()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the application raises

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            elapsed = time.perf_counter() - started
            tally.record(method, template(scope), status, elapsed)


@contextlib.asynccontextmanager
async def process_metrics() -> AsyncIterator[None]:
    """For the life of an API process: keep its pool and breaker gauges current, and take
    them out of the sums when it exits (its counters stay: they were counted)."""
    sampler = asyncio.create_task(_sample_forever())
    try:
        yield
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        tally.flush()
        metrics.process_exited()


async def _sample_forever() -> None:
    while True:
        tally.flush()
        service.sample_process()
        await asyncio.sleep(service.SAMPLE_EVERY_S)
