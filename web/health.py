"""Health for balancers, and draining on SIGTERM (issue 13).

- `GET /healthz/live`: 200 while the process serves HTTP at all (restart it when this fails).
- `GET /healthz/ready`: 200 while a new call would be admitted; 503 at capacity, while the measured
  latency budget is broken (ASR queue, event-loop lag, voice-to-voice) and while draining. The body
  is the hub's `Readiness` (numbers and reasons only). nginx (passive checks) and Kamailio (OPTIONS,
  answered from the same readiness by the SIP endpoint) route around a worker that is not ready.
- `serve(app, settings)`: uvicorn, where the first SIGTERM drains instead of cutting calls: the hub
  stops admitting (ready turns 503), running calls go on for up to `CARECALL_DRAIN_TIMEOUT_S`, the
  rest are told and ended cleanly (their records closed), then the server shuts down (the lifespan
  flushes records) and the process exits 0. A second SIGTERM or a SIGINT stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import asdict
from types import FrameType
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("carecall.health")


def _hub(request: Request) -> Any:
    return getattr(request.app.state, "hub", None)


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/healthz/ready")
    async def ready(request: Request) -> JSONResponse:
        hub = _hub(request)
        if hub is None:
            return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
        state = hub.readiness()
        body: dict[str, Any] = asdict(state)
        body["budget"] = hub.budget.figures()
        return JSONResponse(body, status_code=200 if state.ready else 503,
                            headers={} if state.ready else {"Retry-After": "5"})

    return router


CALL_PATHS = frozenset({"/ws/call", "/telephony/twilio/stream", "/widget/rtc/offer"})
BALANCER_HEADER = b"x-carecall-balancer"


class ReadinessGate:
    """ASGI middleware: a call-opening request that came through our balancer config (it sets
    X-CareCall-Balancer) gets an HTTP 503 before any work when this worker is not ready, so the
    balancer tries the next worker. Direct clients keep the protocol's own `busy` message."""

    def __init__(self, app: Any, paths: frozenset[str] = CALL_PATHS) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("path") in self.paths:
            balanced = any(name == BALANCER_HEADER for name, _ in scope.get("headers", ()))
            hub = getattr(getattr(scope.get("app"), "state", None), "hub", None)
            state = hub.readiness() if balanced and hub is not None else None
            if state is not None and not state.ready:
                await self._refuse(scope, receive, send, state.reason)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: dict[str, Any], receive: Any, send: Any, reason: str) -> None:
        body = f'{{"ready": false, "reason": "{reason}"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"5"),
                   (b"content-length", str(len(body)).encode())]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server cannot send a denial response: a plain refusal (HTTP 403)
            await send({"type": "websocket.close", "code": 1013})


def install(app: FastAPI) -> None:
    app.include_router(build_router())
    app.add_middleware(ReadinessGate)


class ClusterMisconfigured(RuntimeError):
    """The settings cannot run as one of several workers."""


def check_cluster_settings(settings: Any) -> None:
    """Several workers must share one secret: a per-process random key would make widget tokens and
    console sessions valid on one worker only."""
    if settings.workers > 1 and not settings.secret_key.get_secret_value():
        raise ClusterMisconfigured(
            f"CARECALL_WORKERS={settings.workers} but CARECALL_SECRET_KEY is not set: every worker needs the same "
            "secret (generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM drains the call hub before the usual shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s
        self._drain_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        hub = getattr(self._app.state, "hub", None)
        if sig != signal.SIGTERM or self._drain_task is not None or hub is None or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start_drain, hub)

    def _start_drain(self, hub: Any) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain(hub))

    async def _drain(self, hub: Any) -> None:
        log.info("SIGTERM: draining (up to %.0f s for running calls)", self._drain_timeout_s)
        try:
            report = await hub.drain(self._drain_timeout_s)
            log.info("drained: %d call(s) finished, %d ended at the limit, in %.1f s",
                     report.finished, report.ended, report.seconds)
        except Exception as exc:  # never stay up half-drained
            log.error("drain failed: %r", exc)
        self.should_exit = True


def serve(app: FastAPI, settings: Any, **uvicorn_options: Any) -> None:
    """Run `app` like `uvicorn.run`, draining on SIGTERM; the real client address is taken from
    X-Forwarded-For only when the connection comes from one of `settings.trusted_proxies`."""
    if not logging.getLogger().handlers:  # CareCall's own lines (call ids, drains) next to uvicorn's
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    config = uvicorn.Config(app, host=settings.host, port=settings.port, proxy_headers=True,
                            forwarded_allow_ips=list(settings.trusted_proxies) or None, **uvicorn_options)
    DrainingServer(config, app, settings.drain_timeout_s).run()
