"""The inventory's statements, tested directly on real PostgreSQL with two sessions:
skip-locked seat reads, the lock order of a confirm against a hold, lapsed-hold takeover,
and what "free" means while a waitlist waits."""

import asyncio
import time

from sqlalchemy import text

from app.core.db import transaction, unit_of_work
from app.crud import inventory
from app.models import BookingSource
from app.services import inventory as rules
from tests import factories


async def seat_ids(event_id: int) -> list[int]:
    async with unit_of_work() as uow:
        rows = await uow.session.execute(
            text("SELECT id FROM seats WHERE event_id = :e ORDER BY id"), {"e": event_id}
        )
        return [r[0] for r in rows]


async def hold(user_id: int, event_id: int, ids: list[int]) -> int:
    """A committed hold of `ids`, written the way the booking use case writes it."""
    async with transaction() as uow:
        seats = await inventory.lock_chosen(uow.session, user_id, event_id, ids)
        booking = rules.pending_booking(user_id, event_id, seats, BookingSource.DIRECT)
        return await rules.hold_seats(uow, booking, seats)


async def lapse_all_holds() -> None:
    async with transaction() as uow:
        await uow.session.execute(text("UPDATE bookings SET expires_at = now() - interval '1 s'"))
        await uow.session.execute(
            text("UPDATE seats SET held_until = now() - interval '1 s' WHERE status = 'held'")
        )


class TestChosenSeats:
    async def test_a_seat_being_locked_is_skipped_at_once(self, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        a, b = await factories.account(), await factories.account()
        first = (await seat_ids(event_id))[:2]
        async with unit_of_work() as one, unit_of_work() as two:
            locked = await inventory.lock_chosen(one.session, a.id, event_id, first)
            assert [s.id for s in locked] == first
            assert all(s.free for s in locked)
            started = time.monotonic()
            seen = await inventory.lock_chosen(two.session, b.id, event_id, first)
            assert seen == []  # skipped, not waited for
            assert time.monotonic() - started < 0.5

    async def test_unknown_and_foreign_seats_are_not_returned(self, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        other = await factories.seated_event(organizer, seats=10)
        buyer = await factories.account()
        mine, theirs = (await seat_ids(event_id))[0], (await seat_ids(other))[0]
        async with unit_of_work() as uow:
            found = await inventory.lock_chosen(uow.session, buyer.id, event_id, [mine, theirs, 0])
        assert [s.id for s in found] == [mine]


class TestLockOrder:
    async def test_a_confirm_in_flight_makes_a_hold_skip_not_wait(self, organizer) -> None:
        """Confirm locks the booking, then its seats; a hold on those seats meanwhile
        skips them (409 at once) instead of waiting behind the confirm."""
        event_id = await factories.seated_event(organizer, seats=10)
        owner, rival = await factories.account(), await factories.account()
        ids = (await seat_ids(event_id))[:2]
        booking_id = await hold(owner.id, event_id, ids)
        async with unit_of_work() as confirming, unit_of_work() as holding:
            assert await inventory.lock_booking(confirming.session, booking_id) is not None
            locked = await inventory.lock_booking_seats(confirming.session, booking_id)
            assert [s.id for s in locked] == ids
            got = await asyncio.wait_for(
                inventory.lock_chosen(holding.session, rival.id, event_id, ids), timeout=1
            )
            assert got == []

    async def test_the_same_user_is_serialised_by_the_advisory_lock(self, organizer) -> None:
        """Two holds of one user on one event queue on the per-user lock (the cap cannot
        be raced); a different user does not."""
        event_id = await factories.seated_event(organizer, seats=10)
        buyer, other = await factories.account(), await factories.account()
        ids = await seat_ids(event_id)
        async with unit_of_work() as one, unit_of_work() as two, unit_of_work() as three:
            await inventory.lock_chosen(one.session, buyer.id, event_id, ids[:1])
            second = asyncio.create_task(
                inventory.lock_chosen(two.session, buyer.id, event_id, ids[1:2])
            )
            await asyncio.sleep(0.3)
            assert not second.done()  # waits for the first transaction of the same user
            other_user = await asyncio.wait_for(
                inventory.lock_chosen(three.session, other.id, event_id, ids[2:3]), timeout=1
            )
            assert [s.id for s in other_user] == ids[2:3]
            await one.rollback()
            assert [s.id for s in await asyncio.wait_for(second, timeout=2)] == ids[1:2]


class TestLapsedHolds:
    async def test_a_lapsed_hold_is_free_and_taken_over(self, organizer) -> None:
        event_id = await factories.seated_event(organizer, seats=10)
        first, second = await factories.account(), await factories.account()
        ids = (await seat_ids(event_id))[:2]
        old = await hold(first.id, event_id, ids)
        await lapse_all_holds()
        async with unit_of_work() as uow:
            seats = await inventory.lock_chosen(uow.session, second.id, event_id, ids)
        assert all(s.free and s.booking_id == old for s in seats)
        new = await hold(second.id, event_id, ids)
        async with unit_of_work() as uow:
            status = await uow.session.scalar(
                text("SELECT status FROM bookings WHERE id = :b"), {"b": old}
            )
            claims = await uow.session.execute(
                text("SELECT booking_id FROM booking_seats WHERE active ORDER BY seat_id")
            )
            owners = await uow.session.execute(
                text("SELECT DISTINCT booking_id FROM seats WHERE id = ANY(:ids)"), {"ids": ids}
            )
        assert status == "expired"
        assert [r[0] for r in claims] == [new, new]
        assert [r[0] for r in owners] == [new]

    async def test_a_lapsed_hold_waits_for_the_waitlist(self, client, organizer) -> None:
        """While someone waits, a lapsed hold is not free: the sweeper offers it first."""
        event_id = await factories.event(organizer, factories.ga_spec(capacity=2))
        holder, fan, public = [await factories.account() for _ in range(3)]
        ids = await seat_ids(event_id)
        await hold(holder.id, event_id, ids)
        joined = await client.post(
            "/waitlist/join", json={"event_id": event_id, "quantity": 1}, headers=fan.headers
        )
        assert joined.status_code == 201
        await lapse_all_holds()
        async with unit_of_work() as uow:
            seats = await inventory.lock_chosen(uow.session, public.id, event_id, ids)
            counts = await inventory.counts(uow.session, event_id)
        assert [s.free for s in seats] == [False, False]
        assert (counts.available, counts.held) == (0, 2)
