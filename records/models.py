"""The call record as SQLAlchemy 2 tables. Migrations (records/migrations) create them; these
classes are how the code reads and writes them. Times are timezone-aware UTC datetimes; turn
times are seconds since the call started (as the call loop reports them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from voice.result import CallResult


def utcnow() -> datetime:
    return datetime.now(UTC)


# One scale inside the product (CLINICAL.md); lower rank = more urgent.
DISPOSITIONS: tuple[str, ...] = (
    "emergency_ambulance",
    "emergency",
    "consultation_24",
    "consultation",
    "self_care",
)
UNKNOWN_RANK = len(DISPOSITIONS)


def urgency_rank(disposition: str | None) -> int:
    try:
        return DISPOSITIONS.index(disposition or "")
    except ValueError:
        return UNKNOWN_RANK


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite (which stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the call loop's call_id
    channel: Mapped[str] = mapped_column(String(32), default="")
    language: Mapped[str] = mapped_column(String(8), default="")
    mode: Mapped[str] = mapped_column(String(16), default="triage")  # triage | followup
    # Campaigns live in tables another revision adds; calls carry the id as plain text until then.
    campaign_id: Mapped[str | None] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")  # in_progress | ended
    state: Mapped[str] = mapped_column(String(16), default="connecting")
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(200))
    chief_complaint: Mapped[str | None] = mapped_column(Text)
    disposition: Mapped[str | None] = mapped_column(String(32))  # what the bot decided
    override_disposition: Mapped[str | None] = mapped_column(String(32))  # a nurse's last override
    urgency: Mapped[int] = mapped_column(Integer, default=UNKNOWN_RANK, index=True)
    department: Mapped[str | None] = mapped_column(String(120))
    has_red_flags: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # SBAR: situation, background, ...
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the dialogue's whole result
    recording_path: Mapped[str | None] = mapped_column(String(500))
    recording_purged_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    callback_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    qa_result: Mapped[str | None] = mapped_column(String(8), index=True)  # pass | warn | fail (records/qa)
    qa_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    qa_at: Mapped[datetime | None]

    turns: Mapped[list[Turn]] = relationship(back_populates="call", order_by="Turn.idx")
    findings: Mapped[list[Finding]] = relationship(order_by="Finding.id")
    red_flags: Mapped[list[RedFlag]] = relationship(order_by="RedFlag.id")
    followup_outcomes: Mapped[list[FollowupOutcome]] = relationship(order_by="FollowupOutcome.id")
    reviews: Mapped[list[Review]] = relationship(order_by="Review.id")
    qa_checks: Mapped[list[QaCheck]] = relationship(order_by="QaCheck.id", cascade="all, delete-orphan")
    tags: Mapped[list[CallTag]] = relationship(order_by="CallTag.id", cascade="all, delete-orphan")

    @property
    def effective_disposition(self) -> str | None:
        return self.override_disposition or self.disposition

    @property
    def call_result(self) -> CallResult:
        """The stored result, typed (a row of any earlier version reads; a call cut off has an empty one)."""
        return CallResult.from_json(self.result, mode=self.mode)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "idx", name="uq_turns_call_idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(16))  # caller | bot
    text: Mapped[str] = mapped_column(Text, default="")
    heard_text: Mapped[str | None] = mapped_column(Text)  # bot turns cut by a barge-in
    start_s: Mapped[float] = mapped_column(Float, default=0.0)
    end_s: Mapped[float] = mapped_column(Float, default=0.0)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    endpoint_wait_ms: Mapped[float | None] = mapped_column(Float)
    asr_ms: Mapped[float | None] = mapped_column(Float)
    llm_first_token_ms: Mapped[float | None] = mapped_column(Float)
    tts_first_audio_ms: Mapped[float | None] = mapped_column(Float)
    voice_to_voice_ms: Mapped[float | None] = mapped_column(Float)
    uncertain_words: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # [{"word", "p"}]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="turns")


class Finding(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    value: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)  # the caller's words it came from
    turn_idx: Mapped[int | None] = mapped_column(Integer)


class RedFlag(Base):
    __tablename__ = "red_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    flag: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    level: Mapped[str | None] = mapped_column(String(32))
    turn_idx: Mapped[int | None] = mapped_column(Integer)
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowupOutcome(Base):
    __tablename__ = "followup_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(String(120))
    value: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    concern: Mapped[bool] = mapped_column(Boolean, default=False)


class QaCheck(Base):
    """One check of a call's QA report (the report itself is `Call.qa_report`): for filters and rates."""

    __tablename__ = "qa_checks"
    __table_args__ = (
        UniqueConstraint("call_id", "check", name="uq_qa_checks_call_check"),
        Index("ix_qa_checks_check_result", "check", "result"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(40))
    result: Mapped[str] = mapped_column(String(8))  # pass | warn | fail | na


class CallTag(Base):
    """A tag of a call (records/tags.py): `kind:id`, names in both languages from prompts/tags/."""

    __tablename__ = "call_tags"
    __table_args__ = (UniqueConstraint("call_id", "tag", name="uq_call_tags_call_tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(80), index=True)
    kind: Mapped[str] = mapped_column(String(24))


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # nurse | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)  # bump = log out everywhere
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)  # TOTP second factor (optional)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class Review(Base):
    """A nurse's action on a call: reviewed, override, note, callback. Shown as the call's history."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))  # reviewed | override | note | callback
    disposition_from: Mapped[str | None] = mapped_column(String(32))
    disposition_to: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)  # reason, note or callback detail
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Append-only: database triggers refuse UPDATE and DELETE (see the first migration)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)  # no FK: the log outlives users
    username: Mapped[str] = mapped_column(String(80), default="")
    action: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client: Mapped[str | None] = mapped_column(String(64))
