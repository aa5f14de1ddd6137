"""Ticket keys and revocation lists for offline door scanners, and key rotation."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import Id, OrganizerUser, UoW
from app.api.errors import responses
from app.schemas.tickets import RevocationList, TicketKeySet
from app.services import tickets as service

router = APIRouter(tags=["tickets"])

Since = Annotated[int, Query(ge=0, le=2**62, description="The `next` of the previous page")]
PageSize = Annotated[int, Query(ge=1, le=5000, description="Revocations per page")]


@router.get(
    "/events/{event_id}/ticket-keys", response_model=TicketKeySet, responses=responses(404, 422)
)
async def ticket_keys(uow: UoW, event_id: Id) -> TicketKeySet:
    """The event's Ed25519 public keys, retired ones included: all a scanner needs to
    verify EVT2 codes offline (`python -m app.cli verify-ticket --keys`)."""
    result = await service.key_set(uow, event_id)
    await uow.commit()  # the event's first key pair, if this read created it
    return result


@router.get(
    "/events/{event_id}/revoked-tickets",
    response_model=RevocationList,
    responses=responses(404, 422),
)
async def revoked_tickets(
    uow: UoW, event_id: Id, since: Since = 0, limit: PageSize = 1000
) -> RevocationList:
    """Codes of the event's cancelled tickets after cursor `since`, signed with the event's
    key. Public: a cancelled ticket's code admits no one."""
    result = await service.revocation_list(uow, event_id, since, limit)
    await uow.commit()
    return result


@router.post(
    "/admin/events/{event_id}/ticket-keys/rotate",
    response_model=TicketKeySet,
    responses=responses(401, 403, 404, 422),
)
async def rotate_ticket_key(uow: UoW, user: OrganizerUser, event_id: Id) -> TicketKeySet:
    """Retire the signing key (tickets it signed stay valid) and sign new ones with a new key."""
    result = await service.rotate(uow, user, event_id)
    await uow.commit()
    return result
