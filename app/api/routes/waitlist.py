from fastapi import APIRouter

from app.api.deps import CurrentUser, Id, UoW
from app.api.errors import responses
from app.schemas.waitlist import WaitlistEntryRead, WaitlistJoin
from app.services import waitlist as service

router = APIRouter(prefix="/waitlist", tags=["waitlist"])


@router.post(
    "/join",
    status_code=201,
    response_model=WaitlistEntryRead,
    responses=responses(401, 404, 409, 422),
)
async def join(uow: UoW, user: CurrentUser, body: WaitlistJoin) -> WaitlistEntryRead:
    """Queue for `quantity` seats of a sold-out event. Freed seats are held for the oldest
    entries that fit, as a pending booking to confirm within `WAITLIST_OFFER_MINUTES`."""
    result = await service.join(uow, user, body)
    await uow.commit()
    return result


@router.get("/my-entries", response_model=list[WaitlistEntryRead], responses=responses(401))
async def my_entries(uow: UoW, user: CurrentUser) -> list[WaitlistEntryRead]:
    """Your entries, with your place in line and the booking of any offer."""
    return await service.my_entries(uow, user)


@router.delete(
    # `:int`: `DELETE /waitlist/join` is a 405 (wrong method), not an entry called "join".
    "/{entry_id:int}",
    response_model=WaitlistEntryRead,
    responses=responses(401, 404, 409, 422),
)
async def leave(uow: UoW, user: CurrentUser, entry_id: Id) -> WaitlistEntryRead:
    """Leave the queue."""
    result = await service.leave(uow, user, entry_id)
    await uow.commit()
    return result
