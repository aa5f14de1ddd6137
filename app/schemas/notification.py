from datetime import datetime

from app.schemas.common import ORMModel


class NotificationRead(ORMModel):
    id: int
    kind: str
    subject: str
    body: str
    created_at: datetime
    sent_at: datetime | None
