"""Twilio-style Media Streams: the voice webhook (TwiML `<Connect><Stream>`), its signature check,
and the bidirectional WebSocket that carries a phone call's audio as 8 kHz μ-law.

Protocol (Twilio docs, "Media Streams - WebSocket Messages"): the carrier sends `connected`, then
`start` (accountSid, callSid, streamSid, customParameters, mediaFormat), then `media` every 20 ms,
`dtmf`, `mark` (echo of ours once the audio before it has played, or at once after `clear`) and
finally `stop`. We send `media` (base64 μ-law, paced in real time), `mark` after every piece of bot
audio, and `clear` on barge-in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import numpy as np
from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect

from telephony.common import LogOnce, call_log, caller_resampler, mask_number
from telephony.pacing import FramePacer
from voice import g711
from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup, CallEvent, CallInfo, Dtmf, InboundEvent
from voice.hub import CallsBusy
from voice.resample import resample

log = logging.getLogger("carecall.telephony.media_streams")

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = 0.02
MAX_PAYLOAD_BYTES = 8000  # one second of μ-law in one media message is already far beyond Twilio's 20 ms
MAX_INBOUND_QUEUE = 500  # 10 s of caller audio waiting for a stalled call loop
START_TIMEOUT_S = 10.0
DRAIN_ON_HANGUP_S = 15.0
DTMF_DIGITS = set("0123456789*#ABCD")
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later (this worker is full)

SendText = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class MediaStreamTransport:
    """One Media Streams call seen as a `voice.ports.Transport`.

    `handle(message)` is fed every parsed WebSocket message after `start`; `receive()` gives the
    call loop caller audio (resampled to `input_rate`), DTMF and the hang-up.
    """

    def __init__(
        self,
        *,
        call_id: str,
        stream_sid: str,
        call_sid: str,
        send_text: SendText,
        close: Close,
        input_rate: int = 16000,
        on_transfer: Callable[[str, str], None] | None = None,
        lead_s: float = 0.06,
        default_transfer: str = "",
    ) -> None:
        self.input_rate = input_rate
        self.output_rate = g711.SAMPLE_RATE
        self.call_id = call_id
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._send_text = send_text
        self._close = close
        self._on_transfer = on_transfer
        self._default_transfer = default_transfer
        self._log = call_log("carecall.telephony.media_streams", call_id)
        self._once = LogOnce(self._log)
        self._in_resampler = caller_resampler(input_rate)
        self._inbound: asyncio.Queue[InboundEvent] = asyncio.Queue(MAX_INBOUND_QUEUE)
        self._pacer = FramePacer(self._send_frame, frame_s=FRAME_S, lead_s=lead_s)
        self._last_seq = 0
        self._ended = False  # caller side gone (stop or socket closed)
        self._closed = False  # we closed the socket
        # playback accounting for played_s(), per bot turn
        self._turn = 0
        self._mark_n = 0
        self._marks: dict[str, tuple[int, float]] = {}  # mark name → (turn, seconds of turn audio before it)
        self._ignored_marks: set[str] = set()  # answered by the carrier because we cleared them
        self._offset_s = 0.0
        self._queued_s = 0.0  # bot audio pushed in this turn (after offset)
        self._sent_frames = 0  # bot frames on the wire in this turn
        self._first_sent_at: float | None = None
        self._confirmed_s = 0.0
        self._confirmed_at: float | None = None
        self._frozen: float | None = None
        self._tail = np.zeros(0, np.int16)  # < 20 ms of bot audio waiting for the next piece
        self.marks_sent = 0
        self.marks_echoed = 0
        self.clears_sent = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._pacer.start()

    async def aclose(self) -> None:
        await self._pacer.close()

    def caller_gone(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._pacer.clear()
        self._put(CallerHangup(reason))

    # --- inbound -----------------------------------------------------------------------------
    def handle(self, msg: Mapping[str, Any]) -> None:
        """One message from the carrier after `start` (already JSON-decoded into a dict)."""
        event = msg.get("event")
        if self._ended:
            self._once.warning("after-stop", "ignoring %r after the stream stopped", event)
            return
        sid = msg.get("streamSid")
        if event in ("media", "dtmf", "mark", "stop") and sid != self.stream_sid:
            self._once.warning("sid", "ignoring %s with a wrong streamSid", event)
            return
        seq = _int_or_none(msg.get("sequenceNumber"))
        if seq is not None:
            if seq <= self._last_seq:
                self._once.warning("seq", "ignoring out-of-order/duplicate message (seq %d after %d)",
                                   seq, self._last_seq)
                return
            self._last_seq = seq
        if event == "media":
            self._on_media(msg.get("media"))
        elif event == "dtmf":
            digit = (msg.get("dtmf") or {}).get("digit") if isinstance(msg.get("dtmf"), dict) else None
            if isinstance(digit, str) and len(digit) == 1 and digit.upper() in DTMF_DIGITS:
                self._put(Dtmf(digit.upper()))
            else:
                self._once.warning("dtmf", "ignoring a malformed dtmf message")
        elif event == "mark":
            name = (msg.get("mark") or {}).get("name") if isinstance(msg.get("mark"), dict) else None
            if isinstance(name, str):
                self._on_mark_echo(name)
            else:
                self._once.warning("mark", "ignoring a malformed mark message")
        elif event == "stop":
            self._log.info("stream stopped by the carrier")
            self.caller_gone("caller hung up")
        elif event in ("connected", "start"):
            self._once.warning("dup-" + str(event), "ignoring a second %r message", event)
        else:
            self._once.warning("unknown-" + str(event)[:32], "ignoring unknown event %r", str(event)[:32])

    def _on_media(self, media: Any) -> None:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            self._once.warning("media-shape", "ignoring a media message without a payload")
            return
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            self._once.warning("track", "ignoring media on track %r", str(track)[:16])
            return
        payload = media["payload"]
        if len(payload) > (MAX_PAYLOAD_BYTES * 4) // 3 + 4:
            self._once.warning("oversize", "ignoring an oversized media payload (%d chars)", len(payload))
            return
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._once.warning("b64", "ignoring a media payload that is not base64")
            return
        if not data:
            return
        pcm = self._in_resampler.process(Pcm(g711.ulaw_decode(data), g711.SAMPLE_RATE))
        if len(pcm):
            self._put(CallerAudio(pcm))

    def _put(self, event: InboundEvent) -> None:
        try:
            self._inbound.put_nowait(event)
        except asyncio.QueueFull:
            if isinstance(event, CallerHangup):  # make room: the hang-up must get through
                self._inbound.get_nowait()
                self._inbound.put_nowait(event)
            else:
                self._once.warning("inq", "call loop is behind; dropping caller audio")

    async def receive(self) -> InboundEvent:
        if self._ended and self._inbound.empty():
            return CallerHangup("caller hung up")
        return await self._inbound.get()

    # --- outbound ----------------------------------------------------------------------------
    async def _send_frame(self, frame: bytes, _bot: bool) -> None:
        if self._closed or self._ended:
            return
        if self._first_sent_at is None:
            self._first_sent_at = time.monotonic()
        self._sent_frames += 1
        await self._send_json(
            {"event": "media", "streamSid": self.stream_sid,
             "media": {"payload": base64.b64encode(frame).decode("ascii")}}
        )

    async def _send_json(self, obj: dict[str, Any]) -> None:
        try:
            await self._send_text(json.dumps(obj, separators=(",", ":")))
        except Exception as exc:  # the socket went away under us
            self._once.warning("send", "send failed (%s); treating the caller as gone", type(exc).__name__)
            self.caller_gone("connection lost")

    async def send_audio(self, audio: Pcm) -> None:
        if self._ended or self._closed or not len(audio):
            return
        if self._frozen is not None:  # audio after a clear continues the turn from what was heard
            self._start_segment(self._frozen)
        if audio.sample_rate != g711.SAMPLE_RATE:
            audio = resample(audio, g711.SAMPLE_RATE)
        # whole 20 ms frames go out; a remainder waits for the next piece (no silence inside a reply)
        samples = np.concatenate([self._tail, audio.samples]) if len(self._tail) else audio.samples
        whole = len(samples) - len(samples) % FRAME_SAMPLES
        self._tail = samples[whole:]
        if whole:
            self._push(samples[:whole])

    def _flush_tail(self) -> None:
        if len(self._tail):
            tail = np.concatenate([self._tail, np.zeros(FRAME_SAMPLES - len(self._tail), np.int16)])
            self._tail = np.zeros(0, np.int16)
            self._push(tail)

    def _push(self, samples: np.ndarray) -> None:
        encoded = g711.ulaw_encode(samples)
        frames = [encoded[i:i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]
        self._queued_s += len(frames) * FRAME_S
        self._mark_n += 1
        name = f"cc{self._turn}-{self._mark_n}"
        self._marks[name] = (self._turn, self._queued_s)
        self._pacer.push(frames, marker=lambda: self._send_mark(name))

    async def _send_mark(self, name: str) -> None:
        self.marks_sent += 1
        await self._send_json({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def _on_mark_echo(self, name: str) -> None:
        self.marks_echoed += 1
        if name in self._ignored_marks:
            self._ignored_marks.discard(name)  # answered because of our clear: not heard
            return
        entry = self._marks.pop(name, None)
        if entry is None:
            self._once.warning("mark-unknown", "ignoring an echo of a mark we never sent")
            return
        turn, end_s = entry
        if turn == self._turn and self._frozen is None and end_s > self._confirmed_s:
            self._confirmed_s = end_s
            self._confirmed_at = time.monotonic()

    async def clear(self) -> None:
        if self._ended or self._closed:
            return
        heard = self.played_s()
        self._pacer.clear()
        self._tail = np.zeros(0, np.int16)
        # marks the carrier holds come back at once after a clear (streamdouble drops them): in
        # either case they say nothing about what was heard
        self._ignored_marks.update(self._marks)
        self._marks.clear()
        self._frozen = heard
        self.clears_sent += 1
        await self._send_json({"event": "clear", "streamSid": self.stream_sid})

    def _start_segment(self, offset_s: float) -> None:
        self._offset_s = offset_s
        self._queued_s = 0.0
        self._sent_frames = 0
        self._first_sent_at = None
        self._confirmed_s = 0.0
        self._confirmed_at = None
        self._frozen = None

    def played_s(self) -> float:
        """What the caller heard of this turn: confirmed by mark echoes, extrapolated in real time
        since the last echo, never more than was actually sent."""
        if self._frozen is not None:
            return self._frozen
        if self._first_sent_at is None:
            return self._offset_s
        base_at = self._confirmed_at if self._confirmed_at is not None else self._first_sent_at
        estimate = self._confirmed_s + max(0.0, time.monotonic() - base_at)
        return self._offset_s + max(self._confirmed_s, min(estimate, self._sent_frames * FRAME_S))

    def mark_turn(self) -> None:
        self._tail = np.zeros(0, np.int16)
        self._turn += 1
        self._mark_n = 0
        self._start_segment(0.0)

    async def send_event(self, event: CallEvent) -> None:
        return None  # a phone line has no screen

    async def wait_played(self, timeout: float = DRAIN_ON_HANGUP_S) -> bool:
        """Until every queued bot frame is on the wire (plus the lead), or the caller is gone."""
        self._flush_tail()
        ok = await self._pacer.drained(timeout)
        if ok and not self._ended:
            await asyncio.sleep(self._pacer.lead_s)
        return ok

    async def hangup(self, reason: str) -> None:
        """End the call after the bot's last words have been sent; closing the stream ends the
        `<Connect>` and the carrier then asks our action URL what to do (hang up or transfer)."""
        if self._closed:
            return
        if not self._ended:
            await self.wait_played()
        self._closed = True
        self._log.info("hanging up: %s", reason)
        await self._pacer.close()
        try:
            await self._close(1000, reason[:100])
        except Exception:
            pass

    async def transfer(self, target: str) -> bool:
        """Hand the caller to a human line: remember the target for this call's `<Connect action>`
        request, then end the stream; the carrier continues with `<Dial>target</Dial>`."""
        target = target or self._default_transfer
        if self._ended or self._on_transfer is None or not target:
            return False
        self._on_transfer(self.call_sid, target)
        self._log.info("transferring to the human line")
        await self.hangup("transfer")
        return True


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
    get_hub: Callable[[Any], Any] | None = None,
    prefix: str = "/telephony/twilio",
    input_rate: int = 16000,
    on_status: Callable[[int, dict[str, str]], Awaitable[None]] | None = None,
) -> APIRouter:
    """The voice webhook, the stream's end webhook and the Media Streams WebSocket.

    `get_hub(app)` returns the process's `CallHub` (default: `app.state.hub`); `on_status(attempt,
    form)` receives outbound calls' status callbacks."""
    router = APIRouter(prefix=prefix)
    transfers = _Transfers()
    hub_of = get_hub or (lambda app: getattr(app.state, "hub", None))
    router.transfers = transfers  # type: ignore[attr-defined]  # for tests and the console

    def token() -> str:
        return settings.twilio_auth_token.get_secret_value()

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
        hub = hub_of(request.app)
        if hub is not None and not hub.has_capacity():
            log.warning("voice webhook: worker busy, rejecting call from %s", mask_number(form.get("From", "")))
            return Response(BUSY_TWIML, media_type="application/xml")
        q = request.query_params
        language = q.get("language", "zh") if q.get("language") in ("zh", "en") else "zh"
        mode = q.get("mode") if q.get("mode") in ("triage", "followup") else "triage"
        params = {"language": language, "mode": mode}
        for key in ("campaign", "attempt", "patient"):
            if q.get(key):
                params[key] = q[key][:64]
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
        attempt = _int_or_none(request.query_params.get("attempt"))
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
        await ws.accept()
        hub = hub_of(ws.app)
        start = await _await_start(ws)
        if start is None:
            await _safe_close(ws, 1008, "no start message")
            return
        stream_sid, call_sid, custom = start
        try:  # take the line before the call starts (voice/hub.py)
            ticket = hub.reserve("media-stream") if hub is not None else None
        except CallsBusy as exc:
            log.warning("media stream refused: worker busy (%s)", exc.reason)
            ticket = None
        if ticket is None:
            await _safe_close(ws, CLOSE_TRY_AGAIN, "busy")
            return
        call_id = hub.new_call_id()
        language = custom.get("language") if custom.get("language") in ("zh", "en") else "zh"
        mode = custom.get("mode") if custom.get("mode") in ("triage", "followup") else "triage"
        extra = {k: v for k, v in custom.items() if k not in ("language", "mode")}
        info = CallInfo(call_id=call_id, language=language, channel="media-stream", mode=mode,
                        params={"call_sid": call_sid, "stream_sid": stream_sid, **extra})
        transport = MediaStreamTransport(
            call_id=call_id, stream_sid=stream_sid, call_sid=call_sid, send_text=ws.send_text,
            close=lambda code, reason: _safe_close(ws, code, reason), input_rate=input_rate,
            on_transfer=transfers.put, default_transfer=settings.transfer_target)
        clog = call_log("carecall.telephony.media_streams", call_id)
        clog.info("media stream started (%s, %s)", language, mode)
        transport.start()
        call_task = asyncio.create_task(hub.run(ticket, info, transport), name=f"call-{call_id}")
        reader = asyncio.create_task(_read_loop(ws, transport, clog), name=f"ms-read-{call_id}")
        try:
            done, _ = await asyncio.wait({call_task, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:  # caller side ended: let the call loop wind down and close its record
                try:
                    await asyncio.wait_for(asyncio.shield(call_task), 30)
                except TimeoutError:
                    call_task.cancel()
            if call_task.done() and not call_task.cancelled() and call_task.exception() is not None:
                clog.error("call ended with an error: %r", call_task.exception())
        finally:
            ticket.release()  # no-op once the call ran on it
            reader.cancel()
            await transport.aclose()
            await _safe_close(ws, 1000, "call ended")
            clog.info("media stream closed")

    return router


async def _await_start(ws: WebSocket) -> tuple[str, str, dict[str, str]] | None:
    """Read `connected` then `start`; anything else before `start` is logged and ignored."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("media stream: no start message within %.0f s", START_TIMEOUT_S)
            return None
        try:
            text = await asyncio.wait_for(ws.receive_text(), left)
        except (TimeoutError, WebSocketDisconnect, RuntimeError, KeyError):
            return None
        msg = _parse(text)
        if msg is None:
            continue
        event = msg.get("event")
        if event == "connected":
            continue
        if event != "start":
            log.warning("media stream: ignoring %r before start", str(event)[:32])
            continue
        start = msg.get("start")
        sid = msg.get("streamSid") or (start or {}).get("streamSid") if isinstance(start, dict) else None
        if not isinstance(start, dict) or not isinstance(sid, str) or not sid:
            log.warning("media stream: malformed start message")
            return None
        fmt = start.get("mediaFormat") or {}
        if isinstance(fmt, dict) and fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw":
            log.warning("media stream: unsupported encoding %r", str(fmt.get("encoding"))[:32])
            return None
        custom = start.get("customParameters") or {}
        custom = {str(k)[:64]: str(v)[:256] for k, v in custom.items()} if isinstance(custom, dict) else {}
        return sid, str(start.get("callSid", ""))[:64], custom


def _parse(text: str) -> dict[str, Any] | None:
    try:
        msg = json.loads(text)
    except ValueError:
        log.warning("media stream: ignoring a message that is not JSON")
        return None
    if not isinstance(msg, dict):
        log.warning("media stream: ignoring a JSON message that is not an object")
        return None
    return msg


async def _read_loop(ws: WebSocket, transport: MediaStreamTransport, clog: logging.LoggerAdapter) -> None:
    once = LogOnce(clog)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                once.warning("binary", "ignoring a binary frame (Media Streams is JSON text)")
                continue
            try:
                msg = json.loads(text)
            except ValueError:
                once.warning("json", "ignoring a message that is not JSON")
                continue
            if not isinstance(msg, dict):
                once.warning("obj", "ignoring a JSON message that is not an object")
                continue
            transport.handle(msg)
            if msg.get("event") == "stop" and transport._ended:
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        transport.caller_gone("caller hung up")


async def _safe_close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason)
    except Exception:
        pass
