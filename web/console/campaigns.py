"""Outbound follow-up campaigns in the console: the list with counts, one campaign's patients with
every attempt's outcome (phone numbers masked to their last four digits), and for admins: create a
campaign, import a CSV of patients (the CLI's validation; a file with any bad row imports nothing)
and pause or resume dialling. Every view and change is audited.

The tables belong to telephony/campaigns.py (revision 0002_campaigns); this module only reads them
and calls that module's own create/import functions."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from records import repository
from records.models import Call, User
from telephony.campaigns import Attempt, Campaign, Contact, create_campaign, import_csv, next_allowed
from voice.result import CallResult
from web.console.auth import Principal
from web.console.common import (
    COOKIE_PATH,
    admin_api,
    audit_view,
    check_csrf,
    client_host,
    get_services,
    page_user,
    render,
    see_other,
)

MAX_CSV_BYTES = 2 * 1024 * 1024
PAGE_SIZE = 100
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
CHANNELS = ("sip", "carrier")
# Attempt outcomes as the console names them (the dialler's words → the nurse's words).
OUTCOME_LABELS = {
    "completed": "completed",
    "answered": "completed",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "failed",
    "rejected": "failed (rejected)",
    "machine": "answering machine",
    "pending": "in progress",
}
# The "last outcome" filter of a campaign page: value → the stored outcomes it matches.
OUTCOME_FILTERS = {
    "completed": ("completed", "answered"),
    "no-answer": ("no-answer",),
    "busy": ("busy",),
    "failed": ("failed", "rejected"),
    "machine": ("machine",),
}
NOT_REACHED = {"no-answer", "busy", "machine"}


@dataclass
class CampaignCounts:
    """Patients of one campaign, each counted once by where they stand (`escalated` is a part of
    `completed`): due (waiting for the first call or a retry), in progress (being dialled), completed
    (reached), no answer (attempts used up, last one unanswered, busy or a machine), failed (attempts
    used up, last one failed)."""

    patients: int = 0
    due: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    no_answer: int = 0
    escalated: int = 0


@dataclass
class PatientRow:
    contact: Contact
    masked_phone: str
    attempts: list[Attempt] = field(default_factory=list)
    escalated: bool = False


def mask_phone(number: str) -> str:
    """Every digit but the last four hidden: `+8613800000001` → `+*********0001`."""
    digits = re.sub(r"\D", "", number or "")
    if len(digits) <= 4:
        return "*" * len(digits)
    return ("+" if (number or "").startswith("+") else "") + "*" * (len(digits) - 4) + digits[-4:]


def outcome_label(outcome: str | None) -> str:
    return OUTCOME_LABELS.get(outcome or "", outcome or "")


def _escalated_calls(session: Session, campaign_ids: list[str]) -> dict[str, set[int]]:
    """campaign id → ids of its patients whose follow-up call escalated (a red flag, or the
    follow-up dialogue handed the patient to a nurse)."""
    rows = session.execute(
        select(Attempt.campaign_id, Attempt.contact_id, Call.has_red_flags, Call.result)
        .join(Call, Call.id == Attempt.call_id)
        .where(Attempt.campaign_id.in_(campaign_ids))
    ).all()
    out: dict[str, set[int]] = defaultdict(set)
    for campaign_id, contact_id, red, result in rows:
        if red or CallResult.from_json(result, mode="followup").escalated:
            out[campaign_id].add(contact_id)
    return out


def campaign_counts(session: Session, campaign_ids: list[str]) -> dict[str, CampaignCounts]:
    counts = {cid: CampaignCounts() for cid in campaign_ids}
    if not campaign_ids:
        return counts
    rows = session.execute(
        select(Contact.campaign_id, Contact.status, Contact.last_outcome, func.count())
        .where(Contact.campaign_id.in_(campaign_ids))
        .group_by(Contact.campaign_id, Contact.status, Contact.last_outcome)
    ).all()
    for campaign_id, status, last, n in rows:
        c = counts[campaign_id]
        c.patients += n
        if status == "due":
            c.due += n
        elif status == "dialling":
            c.in_progress += n
        elif status == "done":
            c.completed += n
        elif status == "exhausted" and last in NOT_REACHED:
            c.no_answer += n
        else:
            c.failed += n
    for campaign_id, contacts in _escalated_calls(session, campaign_ids).items():
        counts[campaign_id].escalated = len(contacts)
    return counts


def list_campaigns(session: Session) -> list[tuple[Campaign, CampaignCounts]]:
    campaigns = list(session.scalars(select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id)))
    counts = campaign_counts(session, [c.id for c in campaigns])
    return [(c, counts[c.id]) for c in campaigns]


def campaign_patients(
    session: Session, campaign_id: str, outcome: str | None, page: int
) -> tuple[list[PatientRow], int]:
    """One page of a campaign's patients (filtered by their last outcome) with all their attempts,
    and how many patients match."""
    where = [Contact.campaign_id == campaign_id]
    if outcome in OUTCOME_FILTERS:
        where.append(Contact.last_outcome.in_(OUTCOME_FILTERS[outcome]))
    elif outcome == "pending":
        where.append(Contact.status == "dialling")
    elif outcome == "none":
        where.append(Contact.attempts == 0)
    total = session.scalar(select(func.count()).select_from(Contact).where(*where)) or 0
    contacts = list(
        session.scalars(select(Contact).where(*where).order_by(Contact.id).limit(PAGE_SIZE).offset(page * PAGE_SIZE))
    )
    rows = {c.id: PatientRow(c, mask_phone(c.phone)) for c in contacts}
    if rows:
        for attempt in session.scalars(
            select(Attempt).where(Attempt.contact_id.in_(rows)).order_by(Attempt.contact_id, Attempt.number)
        ):
            rows[attempt.contact_id].attempts.append(attempt)
        escalated = _escalated_calls(session, [campaign_id]).get(campaign_id, set())
        for cid in escalated & rows.keys():
            rows[cid].escalated = True
    return list(rows.values()), total


def _campaign(session: Session, campaign_id: str) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise HTTPException(404, "no such campaign")
    return campaign


def _next_call(campaign: Campaign) -> Any:
    """A due patient's next call in the campaign's local time: the stored time moved into the call
    window (the dialler puts a patient claimed outside the window back until it opens)."""
    zone = ZoneInfo(campaign.timezone)

    def next_call(value: datetime | None) -> str:
        if value is None:
            return ""
        return next_allowed(campaign, value).astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return next_call


def _audit(request: Request, user: Principal, action: str, **detail: Any) -> None:
    with get_services(request).database.session() as session:
        repository.audit(session, action, user=session.get(User, user.id), detail=detail, client=client_host(request))


class _Rejected(Exception):
    """The upload is refused as a whole; raised inside the transaction so that it rolls back."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def add_campaign_routes(router: APIRouter) -> None:
    def _list_page(request: Request, user: Principal, status_code: int = 200, **context: Any) -> Response:
        with get_services(request).database.session() as session:
            campaigns = list_campaigns(session)
        context.setdefault("error", None)
        context.setdefault("form", {})
        return render(request, "campaigns.html", user, status_code, campaigns=campaigns, channels=CHANNELS, **context)

    def _detail_page(
        request: Request, user: Principal, campaign_id: str, outcome: str | None = None, page: int = 0,
        status_code: int = 200, **context: Any,
    ) -> Response:  # fmt: skip
        outcome = outcome if outcome in (*OUTCOME_FILTERS, "pending", "none") else None
        with get_services(request).database.session() as session:
            campaign = _campaign(session, campaign_id)
            counts = campaign_counts(session, [campaign_id])[campaign_id]
            patients, total = campaign_patients(session, campaign_id, outcome, page)
        context.setdefault("import_errors", [])
        context.setdefault("imported", None)
        return render(
            request, "campaign.html", user, status_code, campaign=campaign, counts=counts, patients=patients,
            total=total, page=page, page_size=PAGE_SIZE, outcome=outcome or "", outcome_label=outcome_label,
            next_call=_next_call(campaign), outcome_filters=[*OUTCOME_FILTERS, "pending", "none"], **context,
        )  # fmt: skip

    @router.get("/campaigns")
    def campaigns(request: Request, user: Principal = Depends(page_user)) -> Response:
        response = _list_page(request, user)
        audit_view(request, user, "view_campaigns")
        return response

    @router.post("/campaigns")
    def create(
        request: Request, csrf_token: str = Form(""), name: str = Form(""),
        template: str = Form("discharge_followup"), timezone: str = Form("Asia/Shanghai"),
        window_start: str = Form("09:00"), window_end: str = Form("20:00"), max_attempts: str = Form("3"),
        backoff_minutes: str = Form("30"), channel: str = Form("sip"), user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        check_csrf(request, user, csrf_token)
        form = {
            "name": name, "template": template, "timezone": timezone, "window_start": window_start,
            "window_end": window_end, "max_attempts": max_attempts, "backoff_minutes": backoff_minutes,
            "channel": channel,
        }  # fmt: skip
        error = _check_campaign_form(form)
        if error is None:
            try:
                with get_services(request).database.session() as session:
                    campaign = create_campaign(
                        session, name.strip(), template=template.strip() or "discharge_followup",
                        timezone=timezone.strip(), window_start=window_start, window_end=window_end,
                        max_attempts=int(max_attempts), retry_backoff_s=int(backoff_minutes) * 60, channel=channel,
                    )  # fmt: skip
                    repository.audit(
                        session, "campaign_create", user=session.get(User, user.id), client=client_host(request),
                        detail={"campaign": campaign.id, "name": campaign.name, "channel": channel},
                    )  # fmt: skip
                    campaign_id = campaign.id
            except (ValueError, KeyError):  # an unknown time zone
                error = f"Unknown time zone {timezone[:64]!r}; use an IANA name such as Asia/Shanghai."
        if error is not None:
            return _list_page(request, user, 400, error=error, form=form)
        return see_other(f"{COOKIE_PATH}/campaigns/{quote(campaign_id, safe='')}")

    @router.get("/campaigns/{campaign_id}")
    def campaign_page(
        request: Request, campaign_id: str, outcome: str | None = None, page: int = 0,
        user: Principal = Depends(page_user),
    ) -> Response:  # fmt: skip
        page = max(0, page)
        response = _detail_page(request, user, campaign_id, outcome, page)
        audit_view(request, user, "view_campaign", campaign=campaign_id, outcome=outcome or None, page=page)
        return response

    @router.post("/campaigns/{campaign_id}/import")
    def import_patients(
        request: Request, campaign_id: str, csrf_token: str = Form(""), file: UploadFile | None = File(None),
        user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        check_csrf(request, user, csrf_token)
        services = get_services(request)
        filename = (file.filename or "")[:200] if file is not None else ""
        try:
            text = _read_upload(file)
            with services.database.session() as session:
                campaign = _campaign(session, campaign_id)
                try:
                    report = import_csv(session, campaign, text)
                except (ValueError, csv.Error) as exc:
                    raise _Rejected([f"The file is not a patient list: {exc}."]) from None
                if report.skipped:
                    raise _Rejected([f"line {line}: {reason}" for line, reason in report.skipped])
                if report.imported == 0:
                    raise _Rejected(["The CSV has no patient rows."])
                imported = report.imported
                repository.audit(
                    session, "campaign_import", user=session.get(User, user.id), client=client_host(request),
                    detail={"campaign": campaign_id, "file": filename, "imported": imported},
                )  # fmt: skip
        except IntegrityError:  # another import added the same number meanwhile
            errors = ["A patient in this file was added to the campaign meanwhile; nothing was imported, try again."]
        except _Rejected as exc:
            errors = exc.errors
        else:
            return see_other(f"{COOKIE_PATH}/campaigns/{quote(campaign_id, safe='')}?imported={imported}")
        _audit(request, user, "campaign_import_rejected", campaign=campaign_id, file=filename, errors=errors[:50])
        return _detail_page(request, user, campaign_id, status_code=400, import_errors=errors)

    def _set_status(request: Request, user: Principal, campaign_id: str, csrf_token: str, status: str) -> Response:
        check_csrf(request, user, csrf_token)
        with get_services(request).database.session() as session:
            campaign = _campaign(session, campaign_id)
            before, campaign.status = campaign.status, status
            repository.audit(
                session, f"campaign_{'pause' if status == 'paused' else 'resume'}", user=session.get(User, user.id),
                client=client_host(request), detail={"campaign": campaign_id, "from": before, "to": status},
            )  # fmt: skip
        return see_other(f"{COOKIE_PATH}/campaigns/{quote(campaign_id, safe='')}")

    @router.post("/campaigns/{campaign_id}/pause")
    def pause(
        request: Request, campaign_id: str, csrf_token: str = Form(""), user: Principal = Depends(admin_api)
    ) -> Response:
        return _set_status(request, user, campaign_id, csrf_token, "paused")

    @router.post("/campaigns/{campaign_id}/resume")
    def resume(
        request: Request, campaign_id: str, csrf_token: str = Form(""), user: Principal = Depends(admin_api)
    ) -> Response:
        return _set_status(request, user, campaign_id, csrf_token, "active")


def _read_upload(file: UploadFile | None) -> str:
    if file is None or not file.filename:
        raise _Rejected(["Choose a CSV file to import."])
    data = file.file.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise _Rejected([f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB; split it."])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Rejected(["The file is not UTF-8 text; save the spreadsheet as 'CSV UTF-8'."]) from None


def _check_campaign_form(form: dict[str, str]) -> str | None:
    if not form["name"].strip():
        return "A campaign needs a name."
    if len(form["name"]) > 200 or len(form["template"]) > 120:
        return "The name or the questionnaire template is too long."
    if not HHMM.match(form["window_start"]) or not HHMM.match(form["window_end"]):
        return "Call window times are HH:MM (24-hour), for example 09:00 and 20:00."
    if form["window_start"] == form["window_end"]:
        return "The call window must not be empty."
    if not form["max_attempts"].isdigit() or not 1 <= int(form["max_attempts"]) <= 10:
        return "Maximum attempts is a whole number from 1 to 10."
    if not form["backoff_minutes"].isdigit() or not 1 <= int(form["backoff_minutes"]) <= 7 * 24 * 60:
        return "Retry backoff is a whole number of minutes from 1 to 10080."
    if form["channel"] not in CHANNELS:
        return "Channel is sip (hospital PBX) or carrier (REST Calls API)."
    if not form["timezone"].strip():
        return "A time zone is required."
    return None
