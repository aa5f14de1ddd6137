"""Dependencies shared by the routers, as `Annotated` aliases."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer

from app.core.db import UnitOfWork, retry_read_once, unit_of_work
from app.core.errors import Forbidden, NotAuthenticated
from app.core.security import decode_access_token
from app.models import Role, User
from app.schemas.common import MAX_DB_ID
from app.services import users as users_service

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


async def get_uow() -> AsyncIterator[UnitOfWork]:
    # Services commit; this only guarantees that nothing uncommitted outlives the request.
    async with unit_of_work() as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_uow)]


async def get_current_user(uow: UoW, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    if not token:
        raise NotAuthenticated("Log in first: send `Authorization: Bearer <token>`.")
    user_id = decode_access_token(token)
    # A read at the start of the request, in a unit of work that has done nothing yet: safe
    # to run again on a fresh connection if the first one was lost.
    return await retry_read_once(
        lambda: users_service.active_user(uow, user_id), before_retry=uow.rollback
    )


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> object:
    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"This needs the {allowed} role; you are a {user.role.value}.")
        return user

    return Depends(check)


OrganizerUser = Annotated[User, require_role(Role.ORGANIZER, Role.ADMIN)]
AdminUser = Annotated[User, require_role(Role.ADMIN)]

Id = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retry safely: the same key and body return the first response.",
    ),
]

AdmissionToken = Annotated[
    str | None,
    Header(
        alias="Admission-Token",
        max_length=200,
        description="Events with a waiting room: the admission it gave you.",
    ),
]


def client_ip(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"
