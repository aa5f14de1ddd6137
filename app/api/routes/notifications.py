from fastapi import APIRouter

from app.api.deps import CurrentUser, Limit, Offset, UoW
from app.api.errors import responses
from app.schemas.common import Page
from app.schemas.notification import NotificationRead
from app.services import notifications as service

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("/", response_model=Page[NotificationRead], responses=responses(401, 422))
async def my_notifications(
    uow: UoW, user: CurrentUser, limit: Limit = 20, offset: Offset = 0
) -> Page[NotificationRead]:
    """The e-mails Evently sent you (simulated), newest first."""
    return await service.list_mine(uow, user, limit, offset)
