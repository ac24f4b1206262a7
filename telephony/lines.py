"""CareCall's phone lines in one object for `server.py`: the Media Streams router (webhook + stream)
and the SIP endpoint, started and stopped with the app.

    phone = PhoneLines(settings)
    app.include_router(phone.router)
    ...in the lifespan, once app.state.hub exists:  await phone.start(app)  /  await phone.aclose()
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from telephony.media_streams import build_router
from telephony.sip.endpoint import SipConfig, SipEndpoint

log = logging.getLogger("carecall.telephony")


class PhoneLines:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.router = build_router(settings, on_status=self._carrier_status)
        self.sip: SipEndpoint | None = None
        self._engine: Any = None

    async def _carrier_status(self, attempt_id: int, form: dict[str, str]) -> None:
        """A campaign call's progress from the carrier: store the attempt's outcome."""
        import asyncio

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
                                   get_hub=lambda: getattr(app.state, "hub", None))
            await self.sip.start()
            app.state.sip = self.sip

    async def aclose(self) -> None:
        if self.sip is not None:
            await self.sip.stop()
            self.sip = None
        if self._engine is not None:
            self._engine.dispose()
