"""Typed factories: users with tokens, events with seats, straight through the services."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

from app.core.db import transaction
from app.core.security import create_access_token
from app.models import Role
from app.schemas.event import (
    GeneralAdmissionEventCreate,
    SeatedEventCreate,
    SeatLayout,
    SectionLayout,
)
from app.services import events, users

TRUNCATE_ALL = (
    "TRUNCATE users, events, seats, bookings, booking_seats, tickets, idempotency_keys, "
    "notifications, waitlist_entries, analytics_reports, outbox "
    "RESTART IDENTITY CASCADE"
)
PASSWORD = "correct-horse-battery"
_serial = count(1)


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def account(role: Role = Role.CUSTOMER, email: str | None = None) -> Account:
    email = email or f"{role.value}{next(_serial)}@example.com"
    async with transaction() as uow:
        user, _ = await users.ensure_user(uow, email, PASSWORD, role)
    return Account(user.id, user.email, role, create_access_token(user.id))


def future(days: int = 30) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def seated_spec(
    sections: list[tuple[str, int, int, int]] | None = None, name: str = "Test Concert"
) -> SeatedEventCreate:
    """sections: (name, rows, seats_per_row, price_cents)."""
    layout = sections or [("A", 5, 10, 5000)]
    return SeatedEventCreate(
        name=name,
        venue="Test Hall",
        category="music",
        starts_at=future(),
        seating="seated",  # type: ignore[arg-type]
        layout=SeatLayout(
            sections=[
                SectionLayout(name=n, rows=r, seats_per_row=s, price_cents=p)
                for n, r, s, p in layout
            ]
        ),
    )


def ga_spec(
    capacity: int, price_cents: int = 2500, name: str = "Test Festival"
) -> GeneralAdmissionEventCreate:
    return GeneralAdmissionEventCreate(
        name=name,
        venue="Test Park",
        category="festival",
        starts_at=future(),
        seating="general_admission",  # type: ignore[arg-type]
        capacity=capacity,
        price_cents=price_cents,
    )


async def event(
    organizer: Account, spec: SeatedEventCreate | GeneralAdmissionEventCreate, publish: bool = True
) -> int:
    async with transaction() as uow:  # one unit of work: the use cases compose
        owner = await users.active_user(uow, organizer.id)
        created = await events.create(uow, owner, spec)
        if publish:
            await events.publish(uow, owner, created.id)
    return created.id


async def seated_event(organizer: Account, seats: int = 50, price_cents: int = 5000) -> int:
    """A published seated event with `seats` seats in rows of 10 (seats must divide by 10)."""
    return await event(organizer, seated_spec([("A", seats // 10, 10, price_cents)]))
