import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class ErrorBody(BaseModel):
    """Every error response: a sentence for people and a stable code for programs."""

    model_config = ConfigDict(extra="allow")

    detail: str
    code: str


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


MAX_DB_ID = 2**31 - 1


def _json_integer(value: Any) -> Any:
    # Lax pydantic also takes "7" and true for an integer, which `type: integer` refuses;
    # 7.0 is an integer in JSON Schema, and pydantic takes it (7.5 it refuses).
    if isinstance(value, str | bool):
        raise ValueError("expected a JSON integer")
    return value


# Last in `Annotated[int, Field(...), JSON_INT]`: after the bounds, which then stay
# `minimum` / `maximum` in the published schema.
JSON_INT = BeforeValidator(_json_integer)
"""An integer in a request body, as `type: integer` means it."""
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID), JSON_INT]


_RFC3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc3339_only(value: Any) -> Any:
    # pydantic also reads numbers ("0.5", "1700000000") as Unix times: the published
    # `format: date-time` promises RFC 3339, so a number is refused as the schema says.
    if isinstance(value, int | float) or (
        isinstance(value, str) and not _RFC3339_DATE.match(value)
    ):
        raise ValueError("expected an RFC 3339 date-time, such as 2030-01-31T20:00:00Z")
    return value


RfcDateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
"""A date-time as `format: date-time` says: RFC 3339 with its offset (not a number)."""
