from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import DbId


def _given(name: str, other: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "string"}, other: {"type": "null"}}}


class CheckinRequest(BaseModel):
    """What the door scanner read: the printed `code`, or the QR payload."""

    # The rule of `_one_of` below, in the published schema: clients generate from it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [_given("code", "qr_code_data"), _given("qr_code_data", "code")]
        }
    )

    code: Annotated[str, Field(min_length=4, max_length=32)] | None = None
    qr_code_data: Annotated[str, Field(min_length=10, max_length=200)] | None = None
    event_id: DbId | None = Field(default=None, description="The event at this door, if known")
    nonce: (
        Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None
    ) = Field(
        default=None,
        description="The scanner's id for this scan: sending the same scan again (an "
        "offline scanner re-uploading) answers the first admission, `replayed: true`",
    )

    @model_validator(mode="after")
    def _one_of(self) -> "CheckinRequest":
        if (self.code is None) == (self.qr_code_data is None):
            raise ValueError("give exactly one of `code` or `qr_code_data`")
        return self


class CheckinRead(BaseModel):
    ticket_id: int
    code: str
    booking_id: int
    event_id: int
    seat_label: str
    holder: str
    checked_in_at: datetime
    replayed: bool = Field(default=False, description="This scan (same nonce) was admitted before")
