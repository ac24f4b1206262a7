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
        self.router = build_router(settings)
        self.sip: SipEndpoint | None = None

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
