"""Bookings: hold, confirm, cancel, read. Each write commits once, here (through
`commit_response` where an Idempotency-Key stores the response in the same transaction)."""

from fastapi import APIRouter
from fastapi.responses import Response

from app.api import idempotency
from app.api.deps import AdmissionToken, CurrentUser, Id, IdempotencyKey, Limit, Offset, UoW
from app.api.errors import responses
from app.schemas.booking import BookingRead, BookingRequest, ConfirmRequest
from app.schemas.common import Page
from app.services import booking as service
from app.services import waiting_room

router = APIRouter(prefix="/bookings", tags=["bookings"])


@router.post(
    "/",
    status_code=201,
    response_model=BookingRead,
    responses=responses(401, 403, 404, 409, 422, 429, 503),
)
async def hold_seats(
    uow: UoW,
    user: CurrentUser,
    hold: BookingRequest,
    idempotency_key: IdempotencyKey = None,
    admission_token: AdmissionToken = None,
) -> Response:
    """Hold exact seats `{event_id, seat_ids}`, or any N: `{event_id, quantity, section?}`.

    All or nothing; the hold lasts `HOLD_MINUTES`. 409 names the seats that were not free.
    An event with a waiting room needs the `Admission-Token` it gave you (else 403).
    """
    body = hold.command()
    asked = ("hold", body.model_dump(mode="json"))
    replay = await idempotency.replay_or_claim(uow, user.id, idempotency_key, asked)
    if replay is not None:
        return replay
    queued = await waiting_room.require_admission(user.id, body.event_id, admission_token)
    result = await service.hold(uow, user, body, idempotency_key)
    response = await idempotency.commit_response(uow, user.id, idempotency_key, result, 201)
    if queued:
        await waiting_room.admission_used(body.event_id, user.id)
    return response


@router.get("/my-bookings", response_model=Page[BookingRead], responses=responses(401, 422))
async def my_bookings(
    uow: UoW, user: CurrentUser, limit: Limit = 20, offset: Offset = 0
) -> Page[BookingRead]:
    """The caller's bookings, newest first."""
    return await service.list_mine(uow, user, limit, offset)


@router.get("/{booking_id}", response_model=BookingRead, responses=responses(401, 404, 422))
async def get_booking(uow: UoW, user: CurrentUser, booking_id: Id) -> BookingRead:
    return await service.get(uow, user, booking_id)


@router.post(
    "/{booking_id}/confirm",
    response_model=BookingRead,
    responses=responses(401, 402, 404, 409, 410, 422, 503),
)
async def confirm_booking(
    uow: UoW,
    user: CurrentUser,
    booking_id: Id,
    body: ConfirmRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Pay for a hold (simulated: `payment_token: "fail"` is declined) and get tickets."""
    request = body or ConfirmRequest()
    asked = ("confirm", {"booking_id": booking_id, **request.model_dump(mode="json")})
    replay = await idempotency.replay_or_claim(uow, user.id, idempotency_key, asked)
    if replay is not None:
        return replay
    result = await service.confirm(uow, user, booking_id, request)
    return await idempotency.commit_response(uow, user.id, idempotency_key, result)


@router.post(
    "/{booking_id}/extend", response_model=BookingRead, responses=responses(401, 404, 409, 410, 422)
)
async def extend_hold(uow: UoW, user: CurrentUser, booking_id: Id) -> BookingRead:
    """Renew a pending hold for another `HOLD_MINUTES` (from now), at most `HOLD_MAX_RENEWALS`
    times; waitlist offers keep their own deadline. The seats stay held meanwhile."""
    result = await service.extend(uow, user, booking_id)
    await uow.commit()
    return result


@router.post(
    "/{booking_id}/cancel", response_model=BookingRead, responses=responses(401, 404, 409, 422, 503)
)
async def cancel_booking(uow: UoW, user: CurrentUser, booking_id: Id) -> BookingRead:
    """Cancel a pending or confirmed booking (owner or admin); its seats are freed."""
    result = await service.cancel(uow, user, booking_id)
    await uow.commit()
    return result
