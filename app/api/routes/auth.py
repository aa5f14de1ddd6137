from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import CurrentUser, UoW, client_ip
from app.api.errors import responses
from app.core.config import get_settings
from app.core.security import create_access_token
from app.schemas.user import Token, UserCreate, UserRead
from app.services import users as service

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    responses=responses(409, 422, 429, 503),
)
async def register(uow: UoW, body: UserCreate, request: Request) -> UserRead:
    """Create a customer account (any `role` in the body is ignored)."""
    result = await service.register(uow, body, client_ip(request))
    await uow.commit()
    return result


@router.post("/login", response_model=Token, responses=responses(401, 422, 429, 503))
async def login(
    uow: UoW, form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request
) -> Token:
    """OAuth2 password form: `username` is the e-mail. Returns a bearer JWT.

    503 (`busy`, with Retry-After) when this process is already hashing all the passwords
    it can: retry after the time given."""
    user_id = await service.login(uow, form.username, form.password, client_ip(request))
    minutes = get_settings().access_token_minutes
    return Token(access_token=create_access_token(user_id), expires_in=minutes * 60)


@router.get("/me", response_model=UserRead, responses=responses(401))
async def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)
