"""CareCall's phone lines in one object for `server.py`: the Media Streams router (webhook + stream)
and the SIP endpoint, started and stopped with the app.

    phone = PhoneLines(settings)
    app.include_router(phone.router)
    ...in the lifespan, once app.state.hub exists:  await phone.start(app)  /  await phone.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI

from telephony.sip.endpoint import SipConfig, SipEndpoint
from telephony.twilio_webhooks import build_router
from voice.admission import hub_of

log = logging.getLogger("carecall.telephony")


class PhoneLines:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.router = build_router(settings, on_status=self._carrier_status)
        self.sip: SipEndpoint | None = None
        self._engine: Any = None
        self._worker: asyncio.Task[None] | None = None

    async def _carrier_status(self, attempt_id: int, form: dict[str, str]) -> None:
        """A campaign call's progress from the carrier: store the attempt's outcome."""
        from records.db import create_db_engine
        from telephony.campaigns import apply_carrier_status

        if self._engine is None:
            self._engine = create_db_engine(self.settings.resolved_database_url)
        outcome = await asyncio.to_thread(apply_carrier_status, self._engine, attempt_id, form)
        if outcome:
            log.info("campaign attempt %d: %s", attempt_id, outcome)

    async def start(self, app: FastAPI) -> None:
        if self.settings.sip_enabled:
            self.sip = SipEndpoint(SipConfig.from_settings(self.settings),
                                   get_hub=lambda: hub_of(app.state))
            await self.sip.start()
            app.state.sip = self.sip
        if self.settings.campaign_worker:
            self._start_campaign_worker()

    def _start_campaign_worker(self) -> None:
        """Dial due follow-up calls from this server (SIP through its endpoint, carrier by REST)."""
        from records.db import create_db_engine
        from telephony.campaigns import CampaignRunner, CarrierDialer, Dialer, SipDialer

        s = self.settings
        dialers: dict[str, Dialer] = {}
        if self.sip is not None:
            dialers["sip"] = SipDialer(self.sip)
        if s.twilio_account_sid and s.twilio_auth_token.get_secret_value():
            dialers["carrier"] = CarrierDialer(
                api_base=s.twilio_api_base, account_sid=s.twilio_account_sid,
                auth_token=s.twilio_auth_token.get_secret_value(), from_number=s.twilio_from_number,
                public_base_url=s.public_base_url)
        if not dialers:
            log.warning("campaign worker: no SIP endpoint and no carrier account configured; not dialling")
            return
        if self._engine is None:
            self._engine = create_db_engine(s.resolved_database_url)
        runner = CampaignRunner(self._engine, dialers, concurrency=s.campaign_concurrency)

        async def loop() -> None:
            while True:
                try:
                    await runner.run(until_idle=False, poll_s=s.campaign_poll_s)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a database hiccup must not stop follow-up calls for good
                    log.exception("campaign worker: error; retrying")
                    await asyncio.sleep(s.campaign_poll_s)

        self._worker = asyncio.create_task(loop(), name="campaign-worker")
        log.info("campaign worker started (%s)", ", ".join(sorted(dialers)))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        if self.sip is not None:
            await self.sip.stop()
            self.sip = None
        if self._engine is not None:
            self._engine.dispose()
