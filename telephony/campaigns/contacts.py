"""Patients into a campaign: phone numbers normalised to E.164 and a CSV import that reports what it
skipped (by line and reason, never the number)."""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from telephony.campaigns.models import Campaign, Contact, utcnow
from telephony.campaigns.schedule import parse_hhmm
from voice.languages import languages

log = logging.getLogger("carecall.telephony.campaigns")

E164 = re.compile(r"^\+[1-9]\d{7,14}$")


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
    parse_hhmm(campaign.window_start or "09:00")
    parse_hhmm(campaign.window_end or "20:00")
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
        if reason is None and language not in languages:
            reason = f"language must be {' or '.join(languages)}, not {language[:8]!r}"
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
