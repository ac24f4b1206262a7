"""Campaign tables: campaigns, their patients (contacts) and call attempts (revision 0002_campaigns).
Phone numbers live in the database only, never in logs."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RETRY_OUTCOMES = {"busy", "no-answer", "failed", "machine", "rejected"}
DONE_OUTCOMES = {"completed", "answered"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Base(DeclarativeBase):
    pass


class Campaign(_Base):
    __tablename__ = "campaigns"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(120), default="discharge_followup")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    window_start: Mapped[str] = mapped_column(String(5), default="09:00")
    window_end: Mapped[str] = mapped_column(String(5), default="20:00")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    retry_backoff_s: Mapped[int] = mapped_column(Integer, default=1800)
    channel: Mapped[str] = mapped_column(String(16), default="sip")
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Contact(_Base):
    __tablename__ = "campaign_contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    discharge_date: Mapped[date | None] = mapped_column(Date)
    department: Mapped[str | None] = mapped_column(String(120))
    template: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="due")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_outcome: Mapped[str | None] = mapped_column(String(32))


class Attempt(_Base):
    __tablename__ = "campaign_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("campaign_contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(32), default="pending")
    sip_status: Mapped[int | None] = mapped_column(Integer)
    carrier_sid: Mapped[str | None] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
