"""Twilio-style voice webhooks: the voice webhook (TwiML `<Connect><Stream>`), the stream's end
webhook (hang up or `<Dial>` a transfer), outbound status callbacks, and their signature check. The
stream itself is served by telephony.media_streams.serve_stream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from fastapi import APIRouter, Request, Response, WebSocket

from telephony.common import int_or_none, mask_number
from telephony.media_streams import serve_stream
from telephony.stream_auth import StreamGuard
from voice.admission import AdmissionRefused, CallRequest, Hub, hub_of, validate

log = logging.getLogger("carecall.telephony.twilio")


# --- webhook signatures ----------------------------------------------------------------------
def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + every POST param's name and value,
    sorted by name))."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL as signed may carry the default port or not (Twilio's own validators try both)."""
    parts = urlsplit(url)
    variants = [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    return variants


def check_twilio_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    if not signature:
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, u, params), signature)
               for u in _url_variants(url))


# --- TwiML -----------------------------------------------------------------------------------
def connect_stream_twiml(stream_url: str, parameters: Mapping[str, str], action_url: str | None = None) -> str:
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(str(v))}/>" for k, v in parameters.items())
    action = f" action={quoteattr(action_url)}" if action_url else ""
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Connect{action}><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>")


def dial_twiml(target: str) -> str:
    noun = f"<Sip>{xml_escape(target)}</Sip>" if target.startswith(("sip:", "sips:")) else \
        f"<Number>{xml_escape(target)}</Number>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{noun}</Dial></Response>'


HANGUP_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'
REJECT_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject/></Response>'
BUSY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'


# --- the router ------------------------------------------------------------------------------
class _Transfers:
    """Transfers asked for by calls whose stream is ending: callSid → target, for a few minutes."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._ttl = ttl_s
        self._items: dict[str, tuple[str, float]] = {}

    def put(self, call_sid: str, target: str) -> None:
        now = time.monotonic()
        self._items = {k: v for k, v in self._items.items() if now - v[1] < self._ttl}
        self._items[call_sid] = (target, now)

    def pop(self, call_sid: str) -> str | None:
        item = self._items.pop(call_sid, None)
        return item[0] if item else None


def build_router(
    settings: Any,
    *,
    get_hub: Callable[[Any], Hub | None] | None = None,
    prefix: str = "/telephony/twilio",
    input_rate: int | None = None,  # accepted for older callers: stream audio reaches the loop at 8 kHz
    on_status: Callable[[int, dict[str, str]], Awaitable[None]] | None = None,
) -> APIRouter:
    """The voice webhook, the stream's end webhook and the Media Streams WebSocket.

    `get_hub(app)` returns the process's `CallHub` (default: `app.state.hub`); `on_status(attempt,
    form)` receives outbound calls' status callbacks."""
    router = APIRouter(prefix=prefix)
    transfers = _Transfers()
    find_hub: Callable[[Any], Hub | None] = get_hub or (lambda app: hub_of(app.state))
    router.transfers = transfers  # type: ignore[attr-defined]  # for tests and the console
    guard = StreamGuard(settings)  # signed stream tokens (telephony/stream_auth.py)
    router.stream_guard = guard  # type: ignore[attr-defined]

    def token() -> str:
        return str(settings.twilio_auth_token.get_secret_value())

    def public_url(request: Request) -> str:
        base = (settings.public_base_url or "").rstrip("/")
        if not base:
            return str(request.url)
        query = f"?{request.url.query}" if request.url.query else ""
        return base + request.url.path + query

    def ws_base(request: Request) -> str:
        base = (settings.public_base_url or "").rstrip("/") or str(request.base_url).rstrip("/")
        return "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]

    async def verified_form(request: Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if token() and not check_twilio_signature(token(), public_url(request), form,
                                                   request.headers.get("X-Twilio-Signature", "")):
            log.warning("rejected a webhook with a bad or missing X-Twilio-Signature (%s)", request.url.path)
            return None
        return form

    @router.post("/voice")
    async def voice(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        answered_by = form.get("AnsweredBy", "")
        if answered_by.startswith("machine") or answered_by == "fax":  # MachineDetection on outbound calls
            log.info("voice webhook: answered by %s; hanging up", answered_by[:24])
            return Response(HANGUP_TWIML, media_type="application/xml")
        hub = find_hub(request.app)
        if hub is not None and not hub.has_capacity():
            log.warning("voice webhook: worker busy, rejecting call from %s", mask_number(form.get("From", "")))
            return Response(BUSY_TWIML, media_type="application/xml")
        q = request.query_params
        try:  # the same checks as the stream's admission: a bad language is refused, never guessed
            language, mode, _ = validate(CallRequest("media-stream", language=q.get("language") or "zh",
                                                     mode=q.get("mode")))
        except AdmissionRefused as exc:
            log.warning("voice webhook: %s", exc.message)
            return Response(REJECT_TWIML, media_type="application/xml")
        # the call's parameters travel signed in the TwiML; the stream believes nothing else (issue 10 #1, #4)
        params = guard.parameters(language=language, mode=mode, query=q, verified=bool(token()))
        log.info("voice webhook: call from %s (%s, %s)", mask_number(form.get("From", "")), language, mode)
        action = str(request.url_for("twilio_stream_ended"))
        if settings.public_base_url:
            action = settings.public_base_url.rstrip("/") + prefix + "/stream-ended"
        twiml = connect_stream_twiml(ws_base(request) + prefix + "/stream", params, action)
        return Response(twiml, media_type="application/xml")

    @router.post("/status")
    async def status(request: Request) -> Response:
        """Call progress from the carrier (StatusCallback of outbound campaign calls)."""
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        attempt = int_or_none(request.query_params.get("attempt"))
        if on_status is not None and attempt is not None:
            await on_status(attempt, form)
        return Response(status_code=204)

    @router.post("/stream-ended", name="twilio_stream_ended")
    async def stream_ended(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        target = transfers.pop(form.get("CallSid", ""))
        return Response(dial_twiml(target) if target else HANGUP_TWIML, media_type="application/xml")

    @router.websocket("/stream")
    async def stream(ws: WebSocket) -> None:
        await serve_stream(ws, find_hub(ws.app), on_transfer=transfers.put, default_transfer=settings.transfer_target,
                           authenticate=lambda custom: guard.admit(custom, url=ws.url, headers=ws.headers))

    return router


