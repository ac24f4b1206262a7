"""The campaign runner: claims due contacts and dials them, a few at a time; and a campaign's summary."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from telephony.campaigns.dialers import Dialer, DialOutcome
from telephony.campaigns.models import Attempt, Campaign, Contact, utcnow
from telephony.campaigns.schedule import claim_due, finish_attempt, in_window, next_allowed, start_attempt

log = logging.getLogger("carecall.telephony.campaigns")


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
