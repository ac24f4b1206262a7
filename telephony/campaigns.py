"""Outbound follow-up campaigns: patients imported from CSV, call windows in the campaign's local
time, retries with backoff up to a maximum of attempts, and due work claimed from the database so
that any number of dialler workers never call the same patient twice (PostgreSQL:
`SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one atomic `UPDATE ... RETURNING`).

Tables come from the records migrations (revision 0002_campaigns); phone numbers live in the
database only, never in logs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, Text, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from telephony.common import mask_number

log = logging.getLogger("carecall.telephony.campaigns")

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
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


# --- phone numbers and CSV import ------------------------------------------------------------
def normalise_phone(raw: str, default_country: str = "+86") -> str | None:
    """E.164 or None. `00` prefixes become `+`; a bare Chinese mobile (1xxxxxxxxxx) gets +86."""
    s = re.sub(r"[\s\-().]", "", raw or "")
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+") and default_country:
        if default_country == "+86" and re.fullmatch(r"1[3-9]\d{9}", s):
            s = "+86" + s
        elif re.fullmatch(r"\d{6,14}", s):
            s = default_country + s.lstrip("0")
    return s if E164.match(s) else None


@dataclass
class ImportReport:
    imported: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, reason), no numbers


def create_campaign(session: Session, name: str, **fields: Any) -> Campaign:
    campaign = Campaign(id=fields.pop("id", None) or uuid.uuid4().hex[:12], name=name, **fields)
    ZoneInfo(campaign.timezone or "Asia/Shanghai")  # unknown zones fail here, not at 3 a.m.
    _parse_hhmm(campaign.window_start or "09:00")
    _parse_hhmm(campaign.window_end or "20:00")
    session.add(campaign)
    session.flush()
    return campaign


def import_csv(session: Session, campaign: Campaign, source: str | Path, *, now: datetime | None = None,
               default_country: str = "+86") -> ImportReport:
    """Rows: name, phone, language (zh|en), discharge_date (YYYY-MM-DD), department, template."""
    text_ = Path(source).read_text(encoding="utf-8-sig") if isinstance(source, Path) else source
    report = ImportReport()
    now = now or utcnow()
    seen = set(session.scalars(select(Contact.phone).where(Contact.campaign_id == campaign.id)))
    reader = csv.DictReader(io.StringIO(text_))
    missing = {"name", "phone"} - {(h or "").strip().lower() for h in reader.fieldnames or []}
    if missing:
        raise ValueError(f"CSV needs the columns {', '.join(sorted(missing))}")
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        phone = normalise_phone(row.get("phone", ""), default_country)
        reason = None
        if not row.get("name"):
            reason = "no name"
        elif phone is None:
            reason = "invalid phone number (not E.164)"
        elif phone in seen:
            reason = "duplicate phone number in this campaign"
        language = (row.get("language") or "zh").lower()
        if reason is None and language not in ("zh", "en"):
            reason = f"language must be zh or en, not {language[:8]!r}"
        discharge = None
        if reason is None and row.get("discharge_date"):
            try:
                discharge = date.fromisoformat(row["discharge_date"])
            except ValueError:
                reason = "discharge_date is not YYYY-MM-DD"
        if reason is not None:
            report.skipped.append((line, reason))
            log.warning("campaign %s: CSV line %d skipped: %s", campaign.id, line, reason)
            continue
        assert phone is not None
        seen.add(phone)
        session.add(Contact(campaign_id=campaign.id, name=row["name"][:200], phone=phone, language=language,
                            discharge_date=discharge, department=row.get("department") or None,
                            template=row.get("template") or None, next_attempt_at=now))
        report.imported += 1
    session.flush()
    log.info("campaign %s: imported %d patients, skipped %d rows", campaign.id, report.imported, len(report.skipped))
    return report


# --- call windows and retries ----------------------------------------------------------------
def _parse_hhmm(value: str) -> time:
    hh, mm = value.split(":")
    return time(int(hh), int(mm))


def in_window(campaign: Campaign, when: datetime) -> bool:
    local = _aware(when).astimezone(ZoneInfo(campaign.timezone)).time()
    start, end = _parse_hhmm(campaign.window_start), _parse_hhmm(campaign.window_end)
    return start <= local < end if start < end else (local >= start or local < end)


def next_allowed(campaign: Campaign, when: datetime) -> datetime:
    """`when` if it falls in the call window, else the next opening of the window (UTC)."""
    when = _aware(when)
    if in_window(campaign, when):
        return when
    zone = ZoneInfo(campaign.timezone)
    local = when.astimezone(zone)
    start = _parse_hhmm(campaign.window_start)
    opening = datetime.combine(local.date(), start, tzinfo=zone)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=zone)
    return opening.astimezone(UTC)


def retry_at(campaign: Campaign, attempts: int, now: datetime) -> datetime:
    """Exponential backoff from the campaign's base delay, moved into the call window."""
    delay = campaign.retry_backoff_s * (2 ** max(0, attempts - 1))
    return next_allowed(campaign, now + timedelta(seconds=delay))


# --- claiming due work -----------------------------------------------------------------------
def claim_due(engine: Engine, worker: str, *, now: datetime | None = None, limit: int = 1) -> list[int]:
    """Claim up to `limit` due contacts of active campaigns for `worker`; returns their ids."""
    now = now or utcnow()
    if engine.dialect.name == "postgresql":
        with Session(engine) as session, session.begin():
            ids = list(session.scalars(
                select(Contact.id)
                .join(Campaign, Campaign.id == Contact.campaign_id)
                .where(Contact.status == "due", Contact.next_attempt_at <= now, Campaign.status == "active")
                .order_by(Contact.next_attempt_at, Contact.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=Contact)))
            if ids:
                session.execute(Contact.__table__.update().where(Contact.id.in_(ids))
                                .values(status="dialling", claimed_by=worker, claimed_at=now))
            return ids
    claimed: list[int] = []
    stmt = text(
        "UPDATE campaign_contacts SET status = 'dialling', claimed_by = :worker, claimed_at = :now "
        "WHERE id = (SELECT c.id FROM campaign_contacts c JOIN campaigns k ON k.id = c.campaign_id "
        "            WHERE c.status = 'due' AND c.next_attempt_at <= :now AND k.status = 'active' "
        "            ORDER BY c.next_attempt_at, c.id LIMIT 1) "
        "AND status = 'due' RETURNING id")
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores DateTime in SQLite
    for _ in range(limit):
        with engine.begin() as conn:
            row = conn.execute(stmt, {"worker": worker, "now": stamp}).first()
        if row is None:
            break
        claimed.append(int(row[0]))
    return claimed


def start_attempt(session: Session, contact: Contact, channel: str, worker: str) -> Attempt:
    contact.attempts += 1
    attempt = Attempt(contact_id=contact.id, campaign_id=contact.campaign_id, number=contact.attempts,
                      channel=channel, worker=worker, started_at=utcnow())
    session.add(attempt)
    session.flush()
    return attempt


def finish_attempt(session: Session, attempt: Attempt, outcome: str, *, sip_status: int | None = None,
                   call_id: str | None = None, detail: str | None = None, now: datetime | None = None) -> None:
    """Store the outcome; the contact is done, due again later (backoff, call window) or exhausted."""
    now = now or utcnow()
    attempt.outcome = outcome
    attempt.ended_at = now
    attempt.sip_status = sip_status
    attempt.call_id = call_id or attempt.call_id
    attempt.detail = (detail or "")[:500] or None
    contact = session.get(Contact, attempt.contact_id)
    campaign = session.get(Campaign, attempt.campaign_id)
    assert contact is not None and campaign is not None
    contact.last_outcome = outcome
    contact.claimed_by = None
    if outcome in DONE_OUTCOMES:
        contact.status = "done"
    elif contact.attempts >= campaign.max_attempts:
        contact.status = "exhausted"
    else:
        contact.status = "due"
        contact.next_attempt_at = retry_at(campaign, contact.attempts, now)
    log.info("campaign %s: attempt %d for contact %d: %s → contact %s", campaign.id, attempt.number, contact.id,
             outcome, contact.status)


# --- dialling --------------------------------------------------------------------------------
@dataclass
class DialOutcome:
    outcome: str  # completed | answered | machine | busy | no-answer | failed | rejected | pending
    sip_status: int | None = None
    call_id: str | None = None
    carrier_sid: str | None = None
    detail: str = ""


class Dialer(Protocol):
    channel: str

    async def dial(self, contact: Contact, campaign: Campaign, attempt: Attempt) -> DialOutcome: ...


class SipDialer:
    """Through the hospital PBX: the call runs here, in this worker, until it ends."""

    channel = "sip"

    def __init__(self, endpoint: Any, ring_timeout_s: float = 40.0) -> None:
        self.endpoint = endpoint
        self.ring_timeout_s = ring_timeout_s

    async def dial(self, contact: Contact, campaign: Campaign, attempt: Attempt) -> DialOutcome:
        params = {"campaign": campaign.id, "attempt": str(attempt.id), "patient": contact.name,
                  "template": contact.template or campaign.template, "department": contact.department or "",
                  "discharge_date": contact.discharge_date.isoformat() if contact.discharge_date else ""}
        result = await self.endpoint.dial(contact.phone, language=contact.language, mode="followup",
                                          params=params, ring_timeout=self.ring_timeout_s)
        if result.outcome != "answered":
            return DialOutcome(result.outcome, result.sip_status, detail=result.reason)
        return DialOutcome("completed", 200, call_id=result.call_id)


class CarrierDialer:
    """Through a carrier's REST Calls API (Twilio's documented one): Basic auth, form fields To,
    From, Url, StatusCallback. The carrier then fetches our voice webhook and streams the call to
    this server; the outcome arrives later at the status callback."""

    channel = "carrier"

    def __init__(self, *, api_base: str, account_sid: str, auth_token: str, from_number: str,
                 public_base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        self.auth = (account_sid, auth_token)
        self.from_number = from_number
        self.public = public_base_url.rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=15)

    async def dial(self, contact: Contact, campaign: Campaign, attempt: Attempt) -> DialOutcome:
        query = urlencode({"language": contact.language, "mode": "followup", "campaign": campaign.id,
                           "attempt": str(attempt.id)})
        form = {"To": contact.phone, "From": self.from_number, "Url": f"{self.public}/telephony/twilio/voice?{query}",
                "StatusCallback": f"{self.public}/telephony/twilio/status?attempt={attempt.id}",
                "StatusCallbackMethod": "POST", "MachineDetection": "Enable", "Timeout": "40"}
        data: dict[str, str | list[str]] = {**form, "StatusCallbackEvent": ["initiated", "ringing", "answered",
                                                                             "completed"]}
        url = f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls.json"
        try:
            resp = await self.client.post(url, data=data, auth=self.auth)
        except httpx.HTTPError as exc:
            return DialOutcome("failed", detail=f"carrier API unreachable: {type(exc).__name__}")
        if resp.status_code not in (200, 201):
            return DialOutcome("failed", detail=f"carrier API answered {resp.status_code}")
        sid = str(resp.json().get("sid", ""))
        log.info("campaign %s: carrier call created for %s", campaign.id, mask_number(contact.phone))
        return DialOutcome("pending", carrier_sid=sid)


def carrier_outcome(form: Mapping[str, str]) -> str | None:
    """A status callback's meaning: None while the call is still going (initiated, ringing...)."""
    status = form.get("CallStatus", "")
    answered_by = form.get("AnsweredBy", "")
    if status == "completed":
        return "machine" if answered_by.startswith("machine") or answered_by == "fax" else "completed"
    return {"busy": "busy", "no-answer": "no-answer", "failed": "failed", "canceled": "failed"}.get(status)


def apply_carrier_status(engine: Engine, attempt_id: int, form: Mapping[str, str]) -> str | None:
    outcome = carrier_outcome(form)
    if outcome is None:
        return None
    with Session(engine) as session, session.begin():
        attempt = session.get(Attempt, attempt_id)
        if attempt is None or attempt.outcome != "pending":
            return None  # unknown, or a repeated callback
        if form.get("CallSid") and attempt.carrier_sid and form["CallSid"] != attempt.carrier_sid:
            log.warning("status callback for attempt %d carries another CallSid; ignored", attempt_id)
            return None
        finish_attempt(session, attempt, outcome, detail=f"carrier status {form.get('CallStatus')}")
    return outcome


# --- the runner ------------------------------------------------------------------------------
class CampaignRunner:
    """Claims due contacts and dials them, `concurrency` at a time, until no work is due."""

    def __init__(self, engine: Engine, dialers: Mapping[str, Dialer], *, worker: str | None = None,
                 concurrency: int = 1, on_attempt: Callable[[int, str], Awaitable[None]] | None = None) -> None:
        self.engine = engine
        self.dialers = dialers
        self.worker = worker or f"worker-{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency
        self._on_attempt = on_attempt

    async def run_once(self, now: datetime | None = None) -> int:
        ids = await asyncio.to_thread(claim_due, self.engine, self.worker, now=now, limit=self.concurrency)
        await asyncio.gather(*(self._attempt(cid, now) for cid in ids))
        return len(ids)

    async def run(self, *, until_idle: bool = True, poll_s: float = 5.0) -> None:
        while True:
            n = await self.run_once()
            if n == 0:
                if until_idle:
                    return
                await asyncio.sleep(poll_s)

    async def _attempt(self, contact_id: int, now: datetime | None) -> None:
        with Session(self.engine) as session, session.begin():
            contact = session.get(Contact, contact_id)
            assert contact is not None
            campaign = session.get(Campaign, contact.campaign_id)
            assert campaign is not None
            when = now or utcnow()
            if not in_window(campaign, when):  # claimed outside the window: put it back for the opening
                contact.status, contact.claimed_by = "due", None
                contact.next_attempt_at = next_allowed(campaign, when)
                return
            dialer = self.dialers.get(campaign.channel)
            if dialer is None:
                contact.status, contact.claimed_by = "due", None
                log.warning("campaign %s: no %s dialler in this worker", campaign.id, campaign.channel)
                return
            attempt = start_attempt(session, contact, dialer.channel, self.worker)
            session.expunge_all()
        try:
            result = await dialer.dial(contact, campaign, attempt)
        except Exception as exc:  # a dialler bug must not lose the attempt
            log.exception("campaign %s: dialling failed", campaign.id)
            result = DialOutcome("failed", detail=f"{type(exc).__name__}")
        with Session(self.engine) as session, session.begin():
            stored = session.get(Attempt, attempt.id)
            assert stored is not None
            if result.outcome == "pending":
                stored.carrier_sid = result.carrier_sid
            else:
                finish_attempt(session, stored, result.outcome, sip_status=result.sip_status,
                               call_id=result.call_id, detail=result.detail, now=now)
        if self._on_attempt is not None:
            await self._on_attempt(attempt.id, result.outcome)


def campaign_summary(engine: Engine, campaign_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        by_status = dict(session.execute(select(Contact.status, func.count()).where(
            Contact.campaign_id == campaign_id).group_by(Contact.status)).all())
        by_outcome = dict(session.execute(select(Attempt.outcome, func.count()).where(
            Attempt.campaign_id == campaign_id).group_by(Attempt.outcome)).all())
    return {"contacts": by_status, "attempts": by_outcome}
