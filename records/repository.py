"""What the console reads and does with records: the review queue, a call with everything on
it, nurse actions, users and the audit log. Functions take a Session; the caller owns the
transaction (so an action and its audit entry commit together)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from records.models import DISPOSITIONS, AuditEvent, Call, CallTag, QaCheck, Review, User, urgency_rank

ROLES = ("nurse", "admin")
REVIEW_KINDS = ("reviewed", "override", "note", "callback")
_hasher = PasswordHasher()


class RecordsError(ValueError):
    """A request the records cannot honour (unknown call, bad disposition, empty reason...)."""


# --- audit -----------------------------------------------------------------------------------
def audit(
    session: Session,
    action: str,
    *,
    user: User | None = None,
    call_id: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            user_id=user.id if user else None,
            username=user.username if user else "system",
            action=action,
            call_id=call_id,
            detail=detail or {},
            client=client,
        )
    )


def list_audit(
    session: Session, *, call_id: str | None = None, username: str | None = None, limit: int = 200, offset: int = 0
) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    if call_id:
        q = q.where(AuditEvent.call_id == call_id)
    if username:
        q = q.where(AuditEvent.username == username)
    return list(session.scalars(q))


# --- users -----------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str, role: str) -> User:
    username = username.strip()
    if role not in ROLES:
        raise RecordsError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 80:
        raise RecordsError("username must be 1 to 80 characters")
    if len(password) < 8:
        raise RecordsError("password must be at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise RecordsError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True, session_version=1)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active:
        _hasher.hash(password)  # same work whether or not the user exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = datetime.now(UTC)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def update_user(
    session: Session, user_id: int, *, role: str | None = None, active: bool | None = None, password: str | None = None
) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise RecordsError("no such user")
    if role is not None:
        if role not in ROLES:
            raise RecordsError(f"role must be one of {', '.join(ROLES)}")
        user.role = role
    if active is not None:
        user.active = active
    if password is not None:
        if len(password) < 8:
            raise RecordsError("password must be at least 8 characters")
        user.password_hash = hash_password(password)
    user.session_version += 1  # any change logs the user out everywhere
    return user


# --- the review queue ------------------------------------------------------------------------
@dataclass
class QueueFilter:
    date_from: date | None = None
    date_to: date | None = None
    disposition: str | None = None
    department: str | None = None
    reviewed: bool | None = None
    mode: str | None = None  # triage | followup
    campaign: str | None = None
    red_flags_only: bool = False
    qa: str | None = None  # pass | warn | fail | pending (no report yet)
    qa_check: str | None = None  # calls where this check warned or failed (or had result `qa`)
    tag: str | None = None  # kind:id
    sort: str = "urgency"  # urgency | qa (worst QA first)
    limit: int = 200


QA_FILTERS = ("pass", "warn", "fail", "pending")
QUEUE_SORTS = ("urgency", "qa")


def review_queue(session: Session, f: QueueFilter) -> list[Call]:
    """Most urgent first: red flags, then disposition level, unreviewed before reviewed, newest first."""
    effective = func.coalesce(Call.override_disposition, Call.disposition)
    q = select(Call)
    if f.date_from:
        q = q.where(Call.started_at >= datetime.combine(f.date_from, time.min, UTC))
    if f.date_to:
        q = q.where(Call.started_at < datetime.combine(f.date_to + timedelta(days=1), time.min, UTC))
    if f.disposition:
        q = q.where(effective == f.disposition)
    if f.department:
        q = q.where(Call.department == f.department)
    if f.reviewed is True:
        q = q.where(Call.reviewed_at.is_not(None))
    elif f.reviewed is False:
        q = q.where(Call.reviewed_at.is_(None))
    if f.mode:
        q = q.where(Call.mode == f.mode)
    if f.campaign:
        q = q.where(Call.campaign_id == f.campaign)
    if f.red_flags_only:
        q = q.where(Call.has_red_flags.is_(True))
    if f.qa_check:
        wanted = [f.qa] if f.qa in ("pass", "warn", "fail") else ["warn", "fail"]
        q = q.where(
            select(QaCheck.id)
            .where(QaCheck.call_id == Call.id, QaCheck.check == f.qa_check, QaCheck.result.in_(wanted))
            .exists()
        )
    elif f.qa == "pending":
        q = q.where(Call.qa_result.is_(None))
    elif f.qa:
        q = q.where(Call.qa_result == f.qa)
    if f.tag:
        q = q.where(select(CallTag.id).where(CallTag.call_id == Call.id, CallTag.tag == f.tag).exists())
    urgency = (Call.has_red_flags.desc(), Call.urgency.asc())
    rest = (Call.reviewed_at.is_not(None).asc(), Call.started_at.desc())
    if f.sort == "qa":
        qa_rank = case(
            (Call.qa_result == "fail", 0), (Call.qa_result == "warn", 1), (Call.qa_result == "pass", 2), else_=3
        )
        q = q.order_by(qa_rank, *urgency, *rest)
    else:
        q = q.order_by(*urgency, *rest)
    q = q.options(selectinload(Call.tags)).limit(f.limit)
    return list(session.scalars(q))


def queue_choices(session: Session) -> dict[str, list[str]]:
    """Values for the queue's filter menus."""
    departments = session.scalars(select(Call.department).where(Call.department.is_not(None)).distinct())
    campaigns = session.scalars(select(Call.campaign_id).where(Call.campaign_id.is_not(None)).distinct())
    tags = session.scalars(select(CallTag.tag).distinct())
    return {
        "dispositions": list(DISPOSITIONS),
        "departments": sorted(d for d in departments if d),
        "campaigns": sorted(c for c in campaigns if c),
        "tags": sorted(t for t in tags if t),
    }


def get_call(session: Session, call_id: str) -> Call:
    call = session.scalar(
        select(Call)
        .where(Call.id == call_id)
        .options(
            selectinload(Call.turns),
            selectinload(Call.findings),
            selectinload(Call.red_flags),
            selectinload(Call.followup_outcomes),
            selectinload(Call.reviews),
            selectinload(Call.qa_checks),
            selectinload(Call.tags),
        )
    )
    if call is None:
        raise RecordsError("no such call")
    return call


# --- nurse actions (each one also lands on the call's history) ------------------------------
def mark_reviewed(session: Session, call: Call, user: User, note: str | None = None) -> Review:
    call.reviewed_at = datetime.now(UTC)
    call.reviewed_by = user.id
    return _review(session, call, user, "reviewed", text=note or None)


def override_disposition(session: Session, call: Call, user: User, disposition: str, reason: str) -> Review:
    reason = (reason or "").strip()
    if disposition not in DISPOSITIONS:
        raise RecordsError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
    if not reason:
        raise RecordsError("a reason is required to override a disposition")
    before = call.effective_disposition
    call.override_disposition = disposition
    call.urgency = urgency_rank(disposition)
    return _review(session, call, user, "override", text=reason, disposition_from=before, disposition_to=disposition)


def add_note(session: Session, call: Call, user: User, note: str) -> Review:
    note = (note or "").strip()
    if not note:
        raise RecordsError("the note is empty")
    return _review(session, call, user, "note", text=note)


def request_callback(session: Session, call: Call, user: User, detail: str) -> Review:
    call.callback_requested = True
    return _review(session, call, user, "callback", text=(detail or "").strip() or None)


def _review(session: Session, call: Call, user: User, kind: str, **fields: Any) -> Review:
    review = Review(call_id=call.id, user_id=user.id, username=user.username, kind=kind, **fields)
    session.add(review)
    session.flush()
    return review


def calls_by_status(session: Session, status: str) -> list[Call]:
    return list(session.scalars(select(Call).where(Call.status == status).order_by(Call.started_at.desc())))


def expired_recordings(session: Session, older_than: datetime) -> list[Call]:
    return list(
        session.scalars(
            select(Call).where(
                and_(
                    Call.recording_path.is_not(None),
                    Call.recording_purged_at.is_(None),
                    or_(Call.ended_at < older_than, and_(Call.ended_at.is_(None), Call.started_at < older_than)),
                )
            )
        )
    )
