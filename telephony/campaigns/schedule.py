"""When to call: the campaign's call window in its local time, retries with exponential backoff, and
due work claimed atomically so that any number of dialler workers never call the same patient twice
(PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one atomic `UPDATE ... RETURNING`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from telephony.campaigns.models import DONE_OUTCOMES, Attempt, Campaign, Contact, _aware, utcnow

log = logging.getLogger("carecall.telephony.campaigns")


def parse_hhmm(value: str) -> time:
    hh, mm = value.split(":")
    return time(int(hh), int(mm))


def in_window(campaign: Campaign, when: datetime) -> bool:
    local = _aware(when).astimezone(ZoneInfo(campaign.timezone)).time()
    start, end = parse_hhmm(campaign.window_start), parse_hhmm(campaign.window_end)
    return start <= local < end if start < end else (local >= start or local < end)


def next_allowed(campaign: Campaign, when: datetime) -> datetime:
    """`when` if it falls in the call window, else the next opening of the window (UTC)."""
    when = _aware(when)
    if in_window(campaign, when):
        return when
    zone = ZoneInfo(campaign.timezone)
    local = when.astimezone(zone)
    start = parse_hhmm(campaign.window_start)
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
