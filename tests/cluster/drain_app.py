"""A small worker for the drain tests: the real CallHub, web.health routes and DrainingServer (the
same `serve` as `carecall serve`), with calls that are WebSocket echoes instead of the voice loop.

    python -m tests.cluster.drain_app PORT DRAIN_TIMEOUT_S TRUSTED_PROXIES
"""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request, WebSocket

import web.health
from voice.events import CallInfo
from voice.hub import CallHub, CallsBusy


class EchoCall:
    """Runs until the client says "bye" or the worker ends it (drain)."""

    def __init__(self, info: CallInfo, transport: WebSocket) -> None:
        self.info, self.ws = info, transport
        self.reason: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def _talk(self) -> None:
        while True:
            msg = await self.ws.receive_text()
            if msg == "bye":
                self.reason = "completed"
                return
            await self.ws.send_text(f"echo {msg}")

    async def run(self) -> dict[str, Any]:
        self._task = asyncio.ensure_future(self._talk())
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return {"reason": self.reason}

    def cancel(self, reason: str) -> None:
        self.reason = reason
        if self._task is not None:
            self._task.cancel()


def build(capacity: int = 2) -> FastAPI:
    app = FastAPI()
    app.state.hub = CallHub(None, lambda *, info, transport, engines, publish: EchoCall(info, transport),  # type: ignore[arg-type]
                            capacity)
    web.health.install(app)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        return {"client": request.client.host if request.client else ""}

    @app.websocket("/ws/call")
    async def call(ws: WebSocket) -> None:
        await ws.accept()
        hub: CallHub = app.state.hub
        try:
            ticket = hub.reserve("websocket")
        except CallsBusy as exc:
            await ws.send_json({"type": "error", "code": "busy", "message": exc.reason})
            await ws.close(1013)
            return
        info = CallInfo(call_id=hub.new_call_id(), language="en", channel="websocket")
        await ws.send_json({"type": "started", "call_id": info.call_id})
        result = await hub.run(ticket, info, ws)  # type: ignore[arg-type]
        await ws.send_json({"type": "ended", "reason": result["reason"]})
        await ws.close()

    return app


if __name__ == "__main__":
    port, timeout_s, proxies = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    settings = SimpleNamespace(host="127.0.0.1", port=port, drain_timeout_s=timeout_s,
                               trusted_proxies=[p for p in proxies.split(",") if p])
    web.health.serve(build(), settings, log_level="info")
