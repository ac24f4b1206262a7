"""How a campaign call is placed: through the hospital PBX (SIP, the call runs in this worker) or a
carrier's REST Calls API (the carrier streams the call back to our webhook; the outcome arrives at
the status callback)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from telephony.campaigns.models import Attempt, Campaign, Contact
from telephony.campaigns.schedule import finish_attempt
from telephony.common import mask_number

log = logging.getLogger("carecall.telephony.campaigns")


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
