"""The benchmark data set, written through the application's own services.

Runs in the harness process with the benchmark's settings in the environment (its
database, Redis database 14, the server's SECRET_KEY, BCRYPT_ROUNDS=4), so the tokens
minted here are accepted by the server. Customers are bulk-inserted with one
precomputed password hash: thousands of bcrypt rounds would be most of the set-up time
and are not what is being measured. login-rush's people are the exception: their one
shared hash has the production cost (12 rounds), because their logins are measured.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import bcrypt
from sqlalchemy import insert, select

from app.core.config import get_settings
from app.core.db import db, transaction, unit_of_work
from app.core.redis import redis
from app.core.security import create_access_token, hash_password
from app.models import Role, Seat, User
from app.schemas.event import (
    GeneralAdmissionEventCreate,
    SeatedEventCreate,
    SeatLayout,
    SectionLayout,
)
from app.services import events, users
from scripts.bench.options import Sizes

PASSWORD = "bench-password-not-secret"
TOKEN_MINUTES = 6 * 60  # outlives any run
SEATS_PER_ROW = 50
PRODUCTION_BCRYPT_ROUNDS = 12  # the server's default BCRYPT_ROUNDS


def customer_email(index: int) -> str:
    """The e-mail of `Dataset.users[index]`."""
    return f"customer{index + 1}@bench.example"


def rush_email(index: int) -> str:
    """The e-mail of login-rush's person `index` (password PASSWORD, 12 bcrypt rounds)."""
    return f"rush{index + 1}@bench.example"


@dataclass
class Dataset:
    users: list[tuple[int, str]] = field(default_factory=list)  # (user id, access token)
    read_event: int | None = None
    hot_event: int | None = None
    hot_seats: list[int] = field(default_factory=list)
    ga_event: int | None = None
    spread_seats: dict[int, list[int]] = field(default_factory=dict)  # event -> seat ids
    confirm_seats: dict[int, list[int]] = field(default_factory=dict)
    onsale_event: int | None = None
    stadium_event: int | None = None
    stadium_seats: list[int] = field(default_factory=list)
    paced_event: int | None = None  # stadium's reference events (sizes.reference_seats)
    paced_seats: list[int] = field(default_factory=list)
    flash_event: int | None = None
    flash_seats: list[int] = field(default_factory=list)
    login_event: int | None = None
    login_seats: list[int] = field(default_factory=list)
    rush_users: int = 0  # rush_email(0 .. rush_users - 1)

    @property
    def seats(self) -> int:
        return sum(len(s) for s in (*self.spread_seats.values(), *self.confirm_seats.values()))


def seated(
    name: str, seats: int, starts_at: datetime, price_cents: int = 5000
) -> SeatedEventCreate:
    """`seats` seats in rows of 50 (the last row shorter is not needed: sizes divide)."""
    rows, rest = divmod(seats, SEATS_PER_ROW)
    sections = [
        SectionLayout(name="A", rows=rows, seats_per_row=SEATS_PER_ROW, price_cents=price_cents)
    ]
    if rest:
        sections.append(
            SectionLayout(name="B", rows=1, seats_per_row=rest, price_cents=price_cents)
        )
    return SeatedEventCreate(
        name=name,
        description="Benchmark event",
        venue="Bench Arena",
        category="bench",
        starts_at=starts_at,
        seating="seated",
        layout=SeatLayout(sections=[s for s in sections if s.rows > 0]),
    )


def general_admission(name: str, capacity: int, starts_at: datetime) -> GeneralAdmissionEventCreate:
    return GeneralAdmissionEventCreate(
        name=name,
        description="Benchmark event",
        venue="Bench Park",
        category="bench",
        starts_at=starts_at,
        seating="general_admission",
        capacity=capacity,
        price_cents=2500,
    )


async def _organizer() -> User:
    async with transaction() as uow:
        user, _ = await users.ensure_user(
            uow, "organizer@bench.example", PASSWORD, Role.ORGANIZER, "Bench Organizer"
        )
    return user


async def _customers(count: int) -> list[int]:
    password_hash = hash_password(PASSWORD)  # once: every customer shares it
    return await _insert_users([customer_email(i) for i in range(count)], password_hash)


async def _rush_people(count: int) -> list[int]:
    """login-rush's accounts: one hash at the production cost, computed once, shared."""
    salt = bcrypt.gensalt(PRODUCTION_BCRYPT_ROUNDS)
    password_hash = bcrypt.hashpw(PASSWORD.encode(), salt).decode()
    return await _insert_users([rush_email(i) for i in range(count)], password_hash)


async def _insert_users(emails: Sequence[str], password_hash: str) -> list[int]:
    rows = [
        {
            "email": email,
            "full_name": f"Bench Customer {n}",
            "password_hash": password_hash,
            "role": Role.CUSTOMER,
            "is_active": True,
        }
        for n, email in enumerate(emails, start=1)
    ]
    async with unit_of_work() as uow:
        stmt = insert(User).returning(User.id, sort_by_parameter_order=True)
        ids = list((await uow.session.scalars(stmt, rows)).all())
        await uow.commit()
    return ids


async def _event(organizer: User, spec: SeatedEventCreate | GeneralAdmissionEventCreate) -> int:
    async with transaction() as uow:
        created = await events.create(uow, organizer, spec)
        await events.publish(uow, organizer, created.id)
    return created.id


async def _seat_ids(event_ids: Iterable[int]) -> dict[int, list[int]]:
    wanted = list(event_ids)
    found: dict[int, list[int]] = {e: [] for e in wanted}
    async with unit_of_work() as uow:
        stmt = select(Seat.event_id, Seat.id).where(Seat.event_id.in_(wanted)).order_by(Seat.id)
        for event_id, seat_id in await uow.session.execute(stmt):
            found[event_id].append(seat_id)
    return found


async def seed(sizes: Sizes, scenarios: Iterable[str]) -> Dataset:
    """Create what the chosen scenarios need, in the (empty) benchmark database."""
    settings = get_settings()
    assert settings.database_url.rsplit("/", 1)[-1].startswith("evently_bench"), settings
    wanted = set(scenarios)
    data = Dataset()
    try:
        organizer = await _organizer()
        ids = await _customers(sizes.users)
        data.users = [(i, create_access_token(i, minutes=TOKEN_MINUTES)) for i in ids]
        starts = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
        clock = iter(starts + timedelta(hours=h) for h in range(10_000))
        if wanted & {"read-cached", "read-uncached", "events-list"}:
            spec = seated("Read Test", sizes.read_event_seats, next(clock))
            data.read_event = await _event(organizer, spec)
        if "hot-event" in wanted:
            data.hot_event = await _event(
                organizer, seated("Hot Event", sizes.hot_seats, next(clock))
            )
            data.hot_seats = (await _seat_ids([data.hot_event]))[data.hot_event]
        if "ga-rush" in wanted:
            spec_ga = general_admission("GA Rush", sizes.ga_capacity, next(clock))
            data.ga_event = await _event(organizer, spec_ga)
        if "spread" in wanted:
            spread = [
                await _event(organizer, seated(f"Spread {n}", sizes.spread_seats, next(clock)))
                for n in range(1, sizes.spread_events + 1)
            ]
            data.spread_seats = await _seat_ids(spread)
        if "confirm-flow" in wanted:
            confirm = [
                await _event(organizer, seated(f"Confirm {n}", sizes.confirm_seats, next(clock)))
                for n in range(1, sizes.confirm_events + 1)
            ]
            data.confirm_seats = await _seat_ids(confirm)
        await _seed_sales(data, sizes, wanted, organizer, clock)
    finally:
        await redis.close()
        await db.dispose()
    return data


async def _seed_sales(
    data: Dataset, sizes: Sizes, wanted: set[str], organizer: User, clock: Iterator[datetime]
) -> None:
    """The events (and login-rush's people) of onsale, stadium and login-rush."""
    if "onsale" in wanted:
        spec = seated("On Sale", sizes.onsale_seats, next(clock))
        data.onsale_event = await _event(organizer, spec)
    if "stadium" in wanted:
        data.stadium_event, data.stadium_seats = await _seated_event(
            organizer, stadium(sizes, next(clock))
        )
        paced = seated("Reference Paced", sizes.reference_seats, next(clock))
        data.paced_event, data.paced_seats = await _seated_event(organizer, paced)
        flash = seated("Reference Flash", sizes.reference_seats, next(clock))
        data.flash_event, data.flash_seats = await _seated_event(organizer, flash)
    if "login-rush" in wanted:
        spec = seated("Login Rush", sizes.login_event_seats, next(clock))
        data.login_event, data.login_seats = await _seated_event(organizer, spec)
        data.rush_users = len(await _rush_people(sizes.login_users))


def stadium(sizes: Sizes, starts_at: datetime) -> SeatedEventCreate:
    """Sections S1..Sn of `stadium_rows` rows of SEATS_PER_ROW seats."""
    sections = [
        SectionLayout(
            name=f"S{n}",
            rows=sizes.stadium_rows,
            seats_per_row=SEATS_PER_ROW,
            price_cents=9000 - 200 * n,
        )
        for n in range(1, sizes.stadium_sections + 1)
    ]
    return SeatedEventCreate(
        name="Stadium",
        description="Benchmark event",
        venue="Bench Stadium",
        category="bench",
        starts_at=starts_at,
        seating="seated",
        layout=SeatLayout(sections=sections),
    )


async def _seated_event(organizer: User, spec: SeatedEventCreate) -> tuple[int, list[int]]:
    event_id = await _event(organizer, spec)
    return event_id, (await _seat_ids([event_id]))[event_id]


def hold_requests(
    seats_by_event: dict[int, list[int]], users: list[tuple[int, str]], seed: int
) -> list[tuple[int, str, bytes]]:
    """Holds of 1-4 seats that never overlap, across the events, in a shuffled order.

    Each (user, event) pair gets at most one request (at most 4 seats), so the per-user
    cap never refuses one; every request should succeed: a 409 here is a finding.
    """
    rng = random.Random(seed)
    requests: list[tuple[int, str, bytes]] = []
    for n, (event_id, seat_ids) in enumerate(sorted(seats_by_event.items())):
        pool = list(seat_ids)
        rng.shuffle(pool)
        group = 0
        while pool:
            take = min(rng.randint(1, 4), len(pool))
            chosen, pool = sorted(pool[:take]), pool[take:]
            if group >= len(users):
                break  # more groups than users for this event: leave the rest unsold
            user_id, token = users[(group + 37 * n) % len(users)]
            body = f'{{"event_id": {event_id}, "seat_ids": [{", ".join(map(str, chosen))}]}}'
            requests.append((user_id, token, body.encode()))
            group += 1
    rng.shuffle(requests)
    return requests
