from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
