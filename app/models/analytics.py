from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Integer, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, str_enum
from app.models.enums import ReportPeriod


class AnalyticsReport(Base):
    __tablename__ = "analytics_reports"
    __table_args__ = (
        UniqueConstraint("period", "period_start", name="uq_analytics_reports_period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[ReportPeriod] = mapped_column(
        str_enum(ReportPeriod, "report_period"), nullable=False
    )
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    generated_at: Mapped[datetime] = created_at_column()
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
