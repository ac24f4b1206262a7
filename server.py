"""The one ASGI app: wires engines, calls, transports, the widget, telephony and the console.
Nothing imports this module; it imports everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from settings import Settings

log = logging.getLogger("carecall.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runtime pieces (models, LLM server, database, call hub) are started here and
        # attached to app.state; see the sections below.
        yield

    app = FastAPI(title="CareCall", lifespan=lifespan)
    app.state.settings = settings

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
