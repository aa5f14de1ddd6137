"""API fuzzing: schemathesis against the app's own OpenAPI document, as each role.

The app is served by uvicorn on the test's event loop (where its database pool lives)
and schemathesis runs in a thread, over real HTTP, as `schemathesis run --checks all`
would: the examples, coverage, fuzzing and stateful phases, every check. Path ids are
swapped for the ids of seeded rows half of the time, so operations reach real events,
bookings, waitlist entries and users, not only 404s.
"""

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import strategies as st
from schemathesis.engine import events, from_schema
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from app.core.config import get_settings
from app.core.security import BCRYPT_MAX_BYTES
from app.main import api
from app.models import Role
from app.schemas.event import MAX_CAPACITY
from tests import factories
from tests.conftest import record_figure
from tests.faults import FULL, scale
from tests.servers import free_port

MAX_EXAMPLES = scale(4, 100)
SEED = int(os.environ.get("EVENTLY_FUZZ_SEED", random.randrange(2**32) if FULL else 20260101))


@dataclass
class Seeds:
    """Ids of real rows, by the path parameter that names them."""

    ids: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Report:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def record(self, recorder: Any) -> None:
        """Each failing check once per operation and kind (as the CLI counts them)."""
        for case_id, checks in recorder.checks.items():
            for check in checks:
                info = check.failure_info
                if info is None:
                    continue
                key = (recorder.label, f"{check.name}: {info.failure.title}")
                if key not in self.seen:
                    self.seen.add(key)
                    answer = recorder.interactions.get(case_id)
                    got = answer.response if answer is not None else None
                    said = f"{got.status_code} {got.content[:300]!r}" if got is not None else "-"
                    text = f"{recorder.label} {key[1]}\nanswered {said}\n{info.failure.message}"
                    self.failures.append(f"{text}\n{info.code_sample}"[:1500])


@pytest.fixture
async def base_url(app_instance: Any) -> AsyncIterator[str]:
    """The ASGI app uvicorn serves, on this loop, for the fuzzing thread to call."""
    port = free_port()
    config = uvicorn.Config(
        app_instance,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
def rate_limits_off() -> Any:
    # The fuzzer registers, logs in and holds hundreds of times from one address and one
    # account: the limits (tested in test_rate_limits) would answer 429 to most of it.
    settings = get_settings()
    settings.rate_limit_enabled = False
    yield
    settings.rate_limit_enabled = True


async def _seed(client: httpx.AsyncClient, me: factories.Account) -> Seeds:
    organizer = await factories.account(Role.ORGANIZER)
    other = await factories.account()
    seated = await factories.seated_event(organizer, seats=50)
    ga = await factories.event(organizer, factories.ga_spec(capacity=2))
    draft = await factories.event(organizer, factories.seated_spec(), publish=False)
    held = await client.post(
        "/bookings/", json={"event_id": seated, "quantity": 2}, headers=me.headers
    )
    sold_out = await client.post(
        "/bookings/", json={"event_id": ga, "quantity": 2}, headers=other.headers
    )
    entry = await client.post(
        "/waitlist/join", json={"event_id": ga, "quantity": 1}, headers=me.headers
    )
    assert (held.status_code, sold_out.status_code, entry.status_code) == (201, 201, 201)
    return Seeds(
        {
            "event_id": [seated, ga, draft],
            "booking_id": [held.json()["id"], sold_out.json()["id"]],
            "entry_id": [entry.json()["id"]],
            "user_id": [me.id, organizer.id, other.id],
        }
    )


def _real_ids(seeds: Seeds) -> Callable[..., Any]:
    def flatmap_path_parameters(_: Any, params: dict[str, Any]) -> Any:
        # Only a valid id is swapped, so a negative case stays negative.
        if not params or not all(
            isinstance(params.get(name), int) and name in seeds.ids for name in params
        ):
            return st.just(params)
        real = st.fixed_dictionaries({n: st.sampled_from(seeds.ids[n]) for n in params})
        return st.one_of(st.just(params), real)

    return flatmap_path_parameters


def _client_rules() -> Callable[..., None]:
    """A `before_call` hook: what a client does for rules a JSON Schema cannot state."""
    serial = count(1)

    def before_call(_: Any, case: Any, __: Any) -> None:
        # A key names one request: sent again with another body it is refused (422, as the
        # IETF Idempotency-Key draft says; tested in test_booking_flow). A client sends a
        # new key per request, so the fuzzer is given one.
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and 1 <= len(key) <= 200:
            case.headers["Idempotency-Key"] = f"fuzz-{next(serial)}"
        if case.operation.path.startswith("/admin/events") and isinstance(case.body, dict):
            _dates_a_client_would_send(case.body)
            _seats_within_capacity(case.body)
        if isinstance(case.body, dict) and isinstance(case.body.get("password"), str):
            case.body["password"] = _within_bcrypt(case.body["password"])

    return before_call


def _dates_a_client_would_send(body: dict[str, Any]) -> None:
    # An event starts in the future and its sale opens before it (documented on the
    # fields; answered 422 otherwise): relative to now and to each other, which no
    # schema keyword can say. Valid date-times are moved to such dates; others stay.
    for name, days in (("starts_at", 30), ("sale_starts_at", 1)):
        value = body.get(name)
        if isinstance(value, str) and _is_date_time(value):
            body[name] = (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _seats_within_capacity(body: dict[str, Any]) -> None:
    # Unique names and at most MAX_CAPACITY seats in all (documented on `sections`): rules
    # across items, which no schema keyword can say. A client names its sections apart
    # and shrinks its rows until the layout fits.
    layout = body.get("layout")
    sections = layout.get("sections") if isinstance(layout, dict) else None
    if not isinstance(sections, list):
        return
    named = [s for s in sections if isinstance(s, dict) and isinstance(s.get("name"), str)]
    for number, section in enumerate(named):
        section["name"] = f"{section['name'][:30]} {number}"
    sized = [s for s in sections if isinstance(s, dict) and _counts(s, "rows", "seats_per_row")]
    while sum(s["rows"] * s["seats_per_row"] for s in sized) > MAX_CAPACITY:
        widest = max(sized, key=lambda s: s["rows"] * s["seats_per_row"])
        widest["rows"] = max(1, widest["rows"] // 2)
        if widest["rows"] == 1:
            widest["seats_per_row"] = max(1, widest["seats_per_row"] // 2)


def _counts(section: dict[str, Any], *names: str) -> bool:
    return all(isinstance(section.get(n), int | float) and section[n] >= 1 for n in names)


def _within_bcrypt(password: str) -> str:
    # At most 72 bytes in UTF-8 (documented): a schema counts characters, not bytes.
    while len(password.encode()) > BCRYPT_MAX_BYTES:
        password = password[:-1]
    return password


def _is_date_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _fuzz(
    spec: dict[str, Any], base_url: str, token: str, seeds: Seeds, phases: list[str]
) -> Report:
    config = schemathesis.Config()
    config.update(seed=SEED, max_failures=None)
    project = config.projects.override
    project.update(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
    project.phases.update(phases=phases)
    project.checks.update(included_check_names=["all"])
    # Check-in answers 400 `invalid_ticket` (documented) to a QR payload whose signature
    # does not verify: well-formed by the schema, but not a ticket. No other route
    # documents a 400, so this widens the check for that one answer only.
    acceptance = project.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400"]
    project.generation.update(max_examples=MAX_EXAMPLES, database="none")
    schema = schemathesis.openapi.from_dict(spec, config=config)
    schema.hook(_real_ids(seeds))
    report = Report()
    rules = schemathesis.hook(_client_rules())  # `before_call` hooks are global only
    try:
        _collect(from_schema(schema).execute(), report)
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(rules)
    return report


def _collect(stream: Any, report: Report) -> None:
    for event in stream:
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            report.cases += len(event.recorder.cases)
            report.record(event.recorder)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            report.failures.append(f"error: {event!r}"[:2000])
        elif isinstance(event, events.EngineFinished):
            report.failures += [f"{f.title}: {f.message}"[:2000] for f in event.failures]


# `make test-faults` runs every phase. `make test` leaves out the coverage phase: about
# 1,400 requests per role whatever the budget (each parameter's boundaries, wrong types,
# undeclared methods, unparseable bodies), 15-40 s each on a 2-core machine.
PHASES = (
    ["examples", "coverage", "fuzzing", "stateful"] if FULL else ["examples", "fuzzing", "stateful"]
)
ROLES = [(Role.CUSTOMER, PHASES), (Role.ORGANIZER, PHASES), (Role.ADMIN, PHASES)]


@pytest.mark.usefixtures("rate_limits_off")
@pytest.mark.parametrize(("role", "phases"), ROLES, ids=[role.value for role, _ in ROLES])
async def test_the_api_keeps_its_openapi_contract(
    role: Role, phases: list[str], client: httpx.AsyncClient, base_url: str
) -> None:
    me = await factories.account(role)
    seeds = await _seed(client, me)
    started = time.monotonic()
    report = await asyncio.to_thread(_fuzz, api.openapi(), base_url, me.token, seeds, phases)
    record_figure(
        f"fuzz as {role.value}: {report.cases} requests, {MAX_EXAMPLES} examples per operation,"
        f" {time.monotonic() - started:.1f} s, seed {SEED} ({', '.join(phases)})"
    )
    assert not report.failures, f"seed {SEED}:\n\n" + "\n\n".join(report.failures)
