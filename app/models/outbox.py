from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, utc_timestamp


class OutboxJob(Base):
    """A background job written in the same transaction as the change that caused it.

    Sent to the broker right after commit; whatever could not be sent (broker down, process
    killed) is sent later by the relay. Jobs are idempotent, so a second send is harmless.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "created_at", postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    sent_at: Mapped[datetime | None] = utc_timestamp()  # handed to the broker
    done_at: Mapped[datetime | None] = utc_timestamp()  # effect committed, never again
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
