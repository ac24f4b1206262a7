"""The widget's HTTP side: the embeddable script and demo page, call tokens, and WebRTC signalling.

    widget = WidgetService(settings)
    app.include_router(widget.router)      # /widget, /widget/embed.js, /widget/token, /widget/rtc/offer
    app.state.authorise_call = widget.authorise_call   # /ws/call: a start message spends a token
    ...
    await widget.aclose()                  # lifespan exit: tell browsers, close every peer connection

Every signalling request is checked cheaply before it costs anything (rate limit, content type, size,
SDP shape, token); a peer connection that does not connect in time, or whose call ends, is closed and
forgotten, so bad input leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import SessionDescription
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from settings import Settings
from voice.admission import AdmissionRefused, Admitted, CallRequest, admit, hub_of
from voice.hub import CallsBusy
from voice.languages import languages
from web.turn import ice_servers as turn_ice_servers
from web.widget.guard import RateLimiter, check_rate, client_key, read_json, remote_candidate_filter
from web.widget.rtc import WebRtcTransport
from web.widget.tokens import CallGrant, CallTokens, TokenError

log = logging.getLogger("carecall.widget")

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {  # name -> media type; nothing else under static/ is served
    "embed.js": "text/javascript; charset=utf-8",
    "pcm-worklet.js": "text/javascript; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}
MAX_OFFER_BYTES = 32 * 1024  # a browser's audio+data offer is 3-6 KB
MAX_SMALL_BODY = 1024
_BAD_LANG = f"lang must be one of {', '.join(languages)}"
RESTARTING = "the service is restarting; try again shortly"
BUSY = "all lines are busy; please try again in a few minutes"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def use_ice_addresses(addresses: Sequence[str]) -> None:
    """Pin the host addresses aioice gathers candidates on (process-wide: aioice offers no
    per-connection choice). For multi-homed servers, and for loopback-only tests: aioice leaves
    127.0.0.1 out on its own."""
    import aioice.ice

    pinned = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: list(pinned)


def filter_candidates(sdp: str, keep: Callable[[str], bool]) -> str:
    """Drop remote ICE candidates whose address `keep` refuses (so a browser cannot make the
    server send connectivity checks to arbitrary hosts)."""
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) > 4 and not keep(parts[4]):
                continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


class WidgetService:
    def __init__(
        self,
        settings: Settings,
        *,
        token_ttl_s: float = 120.0,
        max_peers: int | None = None,
        offers_per_minute: int = 10,
        tokens_per_minute: int | None = None,
        connect_timeout_s: float = 20.0,
        ice_servers: Sequence[str] | None = None,
        ice_addresses: Sequence[str] | None = None,
        loopback_only: bool | None = None,
        allowed_origins: Sequence[str] | None = None,
        hub_getter: Callable[[Request], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = CallTokens(settings.secret_key.get_secret_value(), ttl_s=token_ttl_s)
        self.max_peers = max_peers if max_peers is not None else settings.max_concurrent_calls
        self.connect_timeout_s = connect_timeout_s
        self.ice_servers = list(settings.webrtc_ice_servers if ice_servers is None else ice_servers)
        ice_addresses = list(settings.webrtc_ice_addresses if ice_addresses is None else ice_addresses)
        if loopback_only is None:  # a server that listens on loopback only can only reach loopback peers
            loopback_only = bool(ice_addresses) and all(_is_loopback(a) for a in ice_addresses)
        self.loopback_only = loopback_only
        self.allowed_origins = set(settings.widget_allowed_origins if allowed_origins is None else allowed_origins)
        self._offers = RateLimiter(offers_per_minute, 60.0)
        self._token_limit = RateLimiter(tokens_per_minute or settings.widget_tokens_per_minute, 60.0)
        self._hub_getter = hub_getter or (lambda request: hub_of(request.app.state))
        self.transports: set[WebRtcTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        if loopback_only and not ice_addresses:
            ice_addresses = ["127.0.0.1"]
        if ice_addresses:
            use_ice_addresses(ice_addresses)
        self.router = self._build_router()

    # --- helpers ---------------------------------------------------------------------------------
    def _cors(self, request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin and ("*" in self.allowed_origins or origin in self.allowed_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def _json(self, request: Request, body: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None) -> Response:
        return self._cors(request, JSONResponse(body, status_code=status, headers=headers))

    def _error(self, request: Request, exc: HTTPException) -> Response:
        return self._json(request, {"detail": exc.detail}, exc.status_code, dict(exc.headers or {}))

    def _rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.ice_servers])

    # --- endpoints ---------------------------------------------------------------------------------
    def _build_router(self) -> APIRouter:
        router = APIRouter(tags=["widget"])

        @router.get("/widget", include_in_schema=False)
        async def page(request: Request) -> Response:
            response = self._static("index.html")
            host = re.sub(r"[^A-Za-z0-9.:\[\]-]", "", request.headers.get("host", ""))[:255]
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; style-src 'self' 'unsafe-inline'; media-src 'self' blob: mediastream:; "
                f"connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'"
            )
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        @router.get("/widget/embed.js", include_in_schema=False)
        async def embed() -> Response:
            return self._static("embed.js")

        @router.get("/widget/static/{name}", include_in_schema=False)
        async def static(name: str) -> Response:
            if name not in STATIC_FILES:
                raise HTTPException(status_code=404, detail="not found")
            return self._static(name)

        @router.options("/widget/token", include_in_schema=False)
        @router.options("/widget/rtc/offer", include_in_schema=False)
        async def preflight(request: Request) -> Response:
            response = self._cors(request, Response(status_code=204))
            if "Access-Control-Allow-Origin" in response.headers:
                response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                response.headers["Access-Control-Max-Age"] = "600"
            return response

        @router.post("/widget/token")
        async def token(request: Request) -> Response:
            """A call token: short-lived, single use, good for one call in `lang`."""
            try:
                check_rate(self._token_limit, request, "call requests")
                data = await read_json(request, MAX_SMALL_BODY)
                lang = data.get("lang", "zh")
                if not isinstance(lang, str) or lang not in languages:
                    raise HTTPException(status_code=400, detail=_BAD_LANG)
                if self._closing:
                    raise HTTPException(status_code=503, detail=RESTARTING)
                return self._json(request, {
                    "token": self.tokens.issue(lang),
                    "expires_in": int(self.tokens.ttl_s),
                    "lang": lang,
                    "ice_servers": turn_ice_servers(self.ice_servers, self.settings),  # + TURN credential
                    "emergency_number": self.settings.emergency_number(lang),
                })
            except HTTPException as exc:
                return self._error(request, exc)

        @router.post("/widget/rtc/offer")
        async def offer(request: Request) -> Response:
            """SDP offer in, SDP answer out; the call starts once the connection is up."""
            try:
                return self._json(request, await self._offer(request))
            except HTTPException as exc:
                return self._error(request, exc)

        return router

    def _static(self, name: str) -> Response:
        response = FileResponse(STATIC / name, media_type=STATIC_FILES[name])
        response.headers["Cache-Control"] = "no-cache"
        if name.endswith(".js"):
            response.headers["Access-Control-Allow-Origin"] = "*"  # the worklet loads cross-origin
        return response

    async def _offer(self, request: Request) -> dict[str, Any]:
        check_rate(self._offers, request, "call attempts")
        data = await read_json(request, MAX_OFFER_BYTES)
        sdp, kind, token = data.get("sdp"), data.get("type"), data.get("token")
        if kind != "offer" or not isinstance(sdp, str) or not sdp.strip():
            raise HTTPException(status_code=400, detail="expected {sdp, type: 'offer', token, lang}")
        lang = data.get("lang")
        if lang is not None and (not isinstance(lang, str) or lang not in languages):
            raise HTTPException(status_code=400, detail=_BAD_LANG)
        try:
            parsed = SessionDescription.parse(sdp)
        except Exception:
            raise HTTPException(status_code=400, detail="the SDP offer could not be parsed") from None
        if not any(m.kind == "audio" for m in parsed.media):
            raise HTTPException(status_code=400, detail="the SDP offer has no audio")
        if not all(m.ice.usernameFragment and m.dtls and m.dtls.fingerprints for m in parsed.media):
            raise HTTPException(status_code=400, detail="the SDP offer lacks ICE or DTLS parameters")
        try:
            peeked = self.tokens.peek(token)
        except TokenError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message) from None
        if self._closing:
            raise HTTPException(status_code=503, detail=RESTARTING)
        hub = self._hub_getter(request)
        if hub is None:
            raise HTTPException(status_code=503, detail="calls are not available yet; try again shortly")
        if len(self.transports) >= self.max_peers:
            raise HTTPException(status_code=429, detail="too many connections open; try again shortly",
                                headers={"Retry-After": "5"})
        try:  # the one admission of every entry point: validate, take the line before answering
            admitted = admit(hub, CallRequest("webrtc", language=lang or peeked.language))
        except AdmissionRefused as exc:
            if exc.busy:
                raise HTTPException(status_code=503, detail=BUSY, headers={"Retry-After": "30"}) from None
            raise HTTPException(status_code=400, detail=exc.message) from None
        try:
            grant = self.tokens.redeem(token)
        except TokenError as exc:
            admitted.release()
            raise HTTPException(status_code=exc.status, detail=exc.message) from None
        # fields that touch records come from the signed token, never from the caller (issue 10 #4)
        # The widget starts a call only after its caller ticked the recording notice on the page.
        admitted.info = dataclasses.replace(admitted.info, params={**grant.params, "consent": "page"})
        language = admitted.info.language

        # STUN goes only to the peer's own address (and our TURN relays), never to any host an offer names
        keep = remote_candidate_filter(client_key(request), self.ice_servers)
        sdp = filter_candidates(sdp, (lambda a: keep(a) and _is_loopback(a)) if self.loopback_only else keep)
        pc = RTCPeerConnection(self._rtc_configuration())
        transport = WebRtcTransport(pc, emergency_number=self.settings.emergency_number(language))
        self.transports.add(transport)
        try:
            # made before the offer is applied, so the offer's audio line takes it, Opus only
            transceiver = pc.addTransceiver(transport.track, direction="sendrecv")
            codecs = RTCRtpSender.getCapabilities("audio").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == "audio/opus"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            admitted.release()
            await self._forget(transport)
            log.info("widget offer refused: %s", type(exc).__name__)
            raise HTTPException(status_code=400, detail="the SDP offer could not be used") from None

        call_id = admitted.info.call_id
        self._spawn(self._run_call(admitted, transport), name=f"webrtc-call:{call_id[:8]}")
        log.info("call %s: webrtc offer answered", call_id[:8])
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "call_id": call_id}

    async def authorise_call(self, token: str | None) -> CallGrant:
        """For /ws/call's start message: use a widget token up, or refuse (PermissionError). The
        grant carries the signed, server-side call parameters."""
        try:
            return self.tokens.redeem(token)
        except TokenError as exc:
            raise PermissionError(exc.message) from None

    # --- calls -------------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, admitted: Admitted, transport: WebRtcTransport) -> None:
        info = admitted.info
        short = info.call_id[:8]
        try:
            if not await transport.wait_connected(self.connect_timeout_s):
                log.info("call %s: webrtc never connected (%s)", short, transport.pc.connectionState)
                return
            transport.send_message({"type": "connected", "call_id": info.call_id, "transport": "webrtc"})
            await admitted.run(transport)
        except CallsBusy:
            transport.send_message({"type": "error", "code": "busy", "message": BUSY})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: webrtc call failed", short)
            transport.send_message({"type": "error", "code": "server_error",
                                    "message": "something went wrong on our side"})
        finally:
            admitted.release()
            await self._forget(transport)

    async def _forget(self, transport: WebRtcTransport) -> None:
        try:
            await transport.close()
        finally:
            self.transports.discard(transport)

    async def aclose(self) -> None:
        """Shutdown: tell every browser the service is restarting, close every peer connection."""
        self._closing = True
        for transport in list(self.transports):
            transport.send_message({"type": "error", "code": "server_restart",
                                    "message": "the service is restarting"})
        await asyncio.gather(*(self._forget(t) for t in list(self.transports)), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
