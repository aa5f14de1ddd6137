from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.models.enums import WaitlistStatus
from app.schemas.booking import MAX_SEATS_PER_REQUEST
from app.schemas.common import JSON_INT, DbId, ORMModel


class WaitlistJoin(BaseModel):
    event_id: DbId
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_REQUEST), JSON_INT] = 1


class WaitlistEntryRead(ORMModel):
    id: int
    event_id: int
    quantity: int
    status: WaitlistStatus
    offered_booking_id: int | None
    created_at: datetime
    position: int | None = None  # 1 = next in line; only while waiting
