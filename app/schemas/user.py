from datetime import datetime
from typing import Annotated

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from app.core.security import BCRYPT_MAX_BYTES
from app.models.enums import Role
from app.schemas.common import ORMModel

# The published schema says `format: email`: an address at a special-use domain (RFC 6761:
# .test, .local, .invalid, ...) has that format, so it is accepted like any other (found
# by fuzzing: "x@y.test" was refused though the document allowed it).
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


def _fits_bcrypt(password: str) -> str:
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    return password


Password = Annotated[
    str,
    Field(
        min_length=8,
        max_length=BCRYPT_MAX_BYTES,
        description=f"8 characters or more, at most {BCRYPT_MAX_BYTES} bytes in UTF-8",
    ),
    AfterValidator(_fits_bcrypt),
]


class UserCreate(BaseModel):
    # Any extra field, `role` included, is ignored: registration always makes a customer.
    model_config = ConfigDict(extra="ignore")

    email: EmailStr
    password: Password
    full_name: str = Field(default="", max_length=200)


class UserRead(ORMModel):
    id: int
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime


class RoleUpdate(BaseModel):
    role: Role


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
