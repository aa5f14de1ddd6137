from fastapi import APIRouter, Response

from app.api.deps import Id, Limit, Offset, OrganizerUser, UoW
from app.api.errors import responses
from app.schemas.common import Page
from app.schemas.webhook import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead
from app.services import webhooks as service

router = APIRouter(prefix="/admin/webhooks", tags=["webhooks"])

MANAGE = responses(401, 403, 404, 422)


@router.post(
    "", status_code=201, response_model=WebhookCreated, responses=responses(401, 403, 404, 422)
)
async def create_webhook(uow: UoW, user: OrganizerUser, body: WebhookCreate) -> WebhookCreated:
    """Subscribe a URL to events of your events (one event with `event_id`). The signing
    secret is in this response only. In production the URL must reach a public address."""
    result = await service.create(uow, user, body)
    await uow.commit()
    return result


@router.get("", response_model=Page[WebhookRead], responses=responses(401, 403, 422))
async def list_webhooks(
    uow: UoW, user: OrganizerUser, limit: Limit = 20, offset: Offset = 0
) -> Page[WebhookRead]:
    """Your webhooks (an admin: all)."""
    return await service.list_mine(uow, user, limit, offset)


@router.get("/{webhook_id}", response_model=WebhookRead, responses=MANAGE)
async def get_webhook(uow: UoW, user: OrganizerUser, webhook_id: Id) -> WebhookRead:
    return await service.get(uow, user, webhook_id)


@router.delete("/{webhook_id}", status_code=204, responses=MANAGE)
async def delete_webhook(uow: UoW, user: OrganizerUser, webhook_id: Id) -> Response:
    """Delete the webhook and its delivery log."""
    await service.delete(uow, user, webhook_id)
    await uow.commit()
    return Response(status_code=204)


@router.post("/{webhook_id}/enable", response_model=WebhookRead, responses=MANAGE)
async def enable_webhook(uow: UoW, user: OrganizerUser, webhook_id: Id) -> WebhookRead:
    """Re-enable after an automatic disable; pending deliveries are retried from now."""
    result = await service.enable(uow, user, webhook_id)
    await uow.commit()
    return result


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryRead], responses=MANAGE)
async def list_deliveries(
    uow: UoW, user: OrganizerUser, webhook_id: Id, limit: Limit = 20, offset: Offset = 0
) -> Page[DeliveryRead]:
    """The delivery log, newest first: attempts, last status code and error, next attempt."""
    return await service.deliveries(uow, user, webhook_id, limit, offset)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryRead,
    responses=responses(401, 403, 404, 409, 422),
)
async def redeliver(uow: UoW, user: OrganizerUser, webhook_id: Id, delivery_id: Id) -> DeliveryRead:
    """Send a delivery again now, with the same body and `Evently-Delivery` id."""
    result = await service.redeliver(uow, user, webhook_id, delivery_id)
    await uow.commit()
    return result
