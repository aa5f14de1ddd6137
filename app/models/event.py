from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, str_enum
from app.models.enums import EventStatus, Seating


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_status_starts_at", "status", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    venue: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(60), nullable=False, default="other")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[EventStatus] = mapped_column(
        str_enum(EventStatus, "event_status"), nullable=False, default=EventStatus.DRAFT
    )
    seating: Mapped[Seating] = mapped_column(str_enum(Seating, "event_seating"), nullable=False)
    total_capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    # The on-sale: when holds open, and the virtual waiting room in front of them.
    sale_starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queue_enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default="false"
    )
    queue_admit_per_second: Mapped[int] = mapped_column(
        Integer, nullable=False, default=50, server_default="50"
    )
    queue_admission_minutes: Mapped[int] = mapped_column(
        Integer, nullable=False, default=10, server_default="10"
    )

    @property
    def queue(self) -> dict[str, Any]:
        """The waiting-room settings as the API shows them (`QueueSettings`)."""
        return {
            "enabled": self.queue_enabled,
            "admit_per_second": self.queue_admit_per_second,
            "admission_minutes": self.queue_admission_minutes,
        }

    @queue.setter
    def queue(self, settings: dict[str, Any]) -> None:
        """Apply the given settings (any subset of `enabled`, `admit_per_second`,
        `admission_minutes`); the others keep their values."""
        for name in ("enabled", "admit_per_second", "admission_minutes"):
            if settings.get(name) is not None:
                setattr(self, f"queue_{name}", settings[name])
