"""Demo data for `make run`: three accounts, a seated event and a general-admission one."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.core.db import UnitOfWork
from app.models import Event, Role, User
from app.schemas.event import (
    GeneralAdmissionEventCreate,
    SeatedEventCreate,
    SeatLayout,
    SectionLayout,
)
from app.services import events, users

DEMO_PASSWORD = "evently-demo"
DEMO_ACCOUNTS = (
    ("admin@example.com", "Ada Admin", Role.ADMIN),
    ("organizer@example.com", "Olive Organizer", Role.ORGANIZER),
    ("customer@example.com", "Carl Customer", Role.CUSTOMER),
)


def _demo_events(starts_at: datetime) -> list[SeatedEventCreate | GeneralAdmissionEventCreate]:
    concert = SeatedEventCreate(
        name="Evently Philharmonic: Night at the Opera",
        description="Overtures and arias; seated, three price levels.",
        venue="Grand Hall",
        category="music",
        starts_at=starts_at,
        seating="seated",
        layout=SeatLayout(
            sections=[
                SectionLayout(name="Orchestra", rows=10, seats_per_row=20, price_cents=8900),
                SectionLayout(name="Balcony", rows=6, seats_per_row=20, price_cents=5900),
                SectionLayout(name="Gallery", rows=4, seats_per_row=25, price_cents=3500),
            ]
        ),
    )
    festival = GeneralAdmissionEventCreate(
        name="Open Air Festival",
        description="A day of bands in the park; general admission.",
        venue="Riverside Park",
        category="festival",
        starts_at=starts_at + timedelta(days=14),
        seating="general_admission",
        capacity=500,
        price_cents=4500,
    )
    return [concert, festival]


async def seed(uow: UnitOfWork) -> list[str]:
    """Create what is missing, in the caller's transaction; running it twice changes
    nothing. Returns what it did."""
    done: list[str] = []
    accounts: dict[Role, User] = {}
    for email, name, role in DEMO_ACCOUNTS:
        user, created = await users.ensure_user(uow, email, DEMO_PASSWORD, role, name)
        accounts[role] = user
        done.append(f"{'created' if created else 'kept'} {role.value} {email}")
    organizer = accounts[Role.ORGANIZER]
    starts_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    for spec in _demo_events(starts_at):
        found = await uow.session.scalar(
            select(Event.id).where(Event.name == spec.name, Event.organizer_id == organizer.id)
        )
        if found is not None:
            done.append(f"kept event {found}: {spec.name}")
            continue
        event = await events.create(uow, organizer, spec)
        await events.publish(uow, organizer, event.id)
        done.append(f"created event {event.id}: {spec.name} ({event.total_capacity} seats)")
    return done
