"""Carrier media streams over a WebSocket (Twilio-style Media Streams today): the phone transport
with a carrier codec, and the stream endpoint that admits the call and runs it.

Bot audio leaves as one `media` message per 20 ms frame, paced by the shared output, with a `mark`
after each piece of bot audio; the carrier echoes a mark once the audio before it has played, which
confirms what the caller heard. `clear` on barge-in. The webhooks (TwiML, signatures) are in
telephony/twilio_webhooks.py; the wire format is in telephony/carriers/.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from telephony.carriers.base import CarrierCodec, CarrierProtocolError, DtmfIn, MarkIn, MediaIn, StreamStart, StreamStop
from telephony.carriers.twilio import TwilioCodec
from telephony.common import LogOnce, call_log
from telephony.phone import DRAIN_S, PhoneTransport
from telephony.stream_auth import StreamAuthError
from voice.admission import AdmissionRefused, CallRequest, Hub, admit
from voice.audio import Pcm
from voice.events import Dtmf
from voice.wire import loads as json_loads

log = logging.getLogger("carecall.telephony.media_streams")

START_TIMEOUT_S = 10.0
DRAIN_ON_HANGUP_S = DRAIN_S
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later (this worker is full)
CLOSE_POLICY = 1008
MAX_MESSAGE_CHARS = 64 * 1024

SendText = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class MediaStreamTransport(PhoneTransport):
    """One carrier media stream seen as a `voice.ports.Transport`. `handle(message)` is fed every
    parsed WebSocket message after the start; `receive()` gives the call loop 8 kHz caller audio,
    DTMF and the hang-up."""

    def __init__(
        self,
        *,
        call_id: str,
        stream_sid: str,
        call_sid: str,
        send_text: SendText,
        close: Close,
        codec: CarrierCodec | None = None,
        input_rate: int | None = None,  # accepted for older callers; audio arrives at 8 kHz (the loop resamples)
        on_transfer: Callable[[str, str], None] | None = None,
        lead_s: float = 0.06,
        default_transfer: str = "",
    ) -> None:
        super().__init__(call_id=call_id, log_name="carecall.telephony.media_streams", send_frame=self._send_frame,
                         lead_s=lead_s, max_ahead_s=max(1.0, lead_s + 0.5))
        if codec is None:
            twilio = TwilioCodec()
            twilio.stream_sid = stream_sid
            codec = twilio
        self.codec = codec
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._send_text = send_text
        self._close = close
        self._on_transfer = on_transfer
        self._default_transfer = default_transfer
        # playback receipts: mark name → (turn, seconds of the turn's audio before it)
        self._turn = 0
        self._mark_n = 0
        self._marks: dict[str, tuple[int, float]] = {}
        self._ignored_marks: set[str] = set()  # answered by the carrier because we cleared them
        self._turn_pushed_s = 0.0
        self.marks_sent = 0
        self.marks_echoed = 0
        self.clears_sent = 0

    # --- inbound -----------------------------------------------------------------------------
    def handle(self, msg: Mapping[str, Any]) -> None:
        """One message from the carrier after the start (already JSON-decoded into a dict)."""
        if self._ended:
            self._once.warning("after-stop", "ignoring %r after the stream stopped", str(msg.get("event"))[:32])
            return
        try:
            item = self.codec.decode(msg)
        except CarrierProtocolError as exc:
            self._once.warning(exc.key, "%s", str(exc))
            return
        if isinstance(item, MediaIn):
            self.caller_audio(item.samples)
        elif isinstance(item, DtmfIn):
            self.inbound.put(Dtmf(item.digit))
        elif isinstance(item, MarkIn):
            self._on_mark_echo(item.name)
        elif isinstance(item, StreamStop):
            self._log.info("stream stopped by the carrier")
            self.caller_gone("caller hung up")

    # --- outbound ----------------------------------------------------------------------------
    async def _send_frame(self, frame: Pcm, _bot: bool) -> None:
        if not self.gone:
            await self._send_wire(self.codec.media(frame))

    async def _send_wire(self, text: str | None) -> None:
        if text is None:
            return
        try:
            await self._send_text(text)
        except Exception as exc:  # the socket went away under us
            self._once.warning("send", "send failed (%s); treating the caller as gone", type(exc).__name__)
            self.caller_gone("connection lost")

    async def send_audio(self, audio: Pcm) -> None:
        if self.gone or not len(audio):
            return
        self._turn_pushed_s += audio.duration
        self._mark_n += 1
        name = f"cc{self._turn}-{self._mark_n}"
        self._marks[name] = (self._turn, self._turn_pushed_s)
        await self.output.push(audio, marker=lambda: self._send_mark(name))

    async def _send_mark(self, name: str) -> None:
        text = self.codec.mark(name)
        if text is not None:
            self.marks_sent += 1
            await self._send_wire(text)

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
        if turn == self._turn:
            self.output.confirm_played(end_s)

    async def on_clear(self) -> None:
        # marks the carrier holds come back at once after a clear (streamdouble drops them): in
        # either case they say nothing about what was heard
        self._ignored_marks.update(self._marks)
        self._marks.clear()
        self._turn_pushed_s = self.output.segment_sent_s
        self.clears_sent += 1
        await self._send_wire(self.codec.clear())

    def mark_turn(self) -> None:
        super().mark_turn()
        self._turn += 1
        self._mark_n = 0
        self._turn_pushed_s = 0.0

    async def hangup(self, reason: str) -> None:
        """End the call after the bot's last words have been played; closing the stream ends the
        `<Connect>` and the carrier then asks our action URL what to do (hang up or transfer)."""
        if self._closed:
            return
        if not self._ended:
            await self.wait_played()
        self._closed = True
        self._log.info("hanging up: %s", reason)
        await self.output.close()
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


# --- the stream endpoint ---------------------------------------------------------------------
async def serve_stream(
    ws: WebSocket,
    hub: Hub | None,
    *,
    codec: CarrierCodec | None = None,
    on_transfer: Callable[[str, str], None] | None = None,
    default_transfer: str = "",
    default_language: str = "zh",
    authenticate: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
) -> None:
    """One carrier media stream from accept to close: read the start, admit the call (a missing
    language is `default_language`; a bad language or mode is refused, never guessed), run it."""
    codec = codec or TwilioCodec()
    await ws.accept()
    start = await _await_start(ws, codec)
    if start is None:
        await _safe_close(ws, CLOSE_POLICY, "no start message")
        return
    custom: Mapping[str, str] = start.params
    if authenticate is not None:  # a signed stream token from our own TwiML, before anything else (issue 10 #1)
        try:
            custom = authenticate(start.params)
        except StreamAuthError as exc:
            log.warning("media stream refused: %s", exc)
            await _safe_close(ws, CLOSE_POLICY, "unauthorised")
            return
    params = {k: v for k, v in custom.items() if k not in ("language", "mode")}
    request = CallRequest("media-stream", language=custom.get("language"), mode=custom.get("mode"),
                          params={"call_sid": start.carrier_call_id, "stream_sid": start.stream_id, **params},
                          default_language=default_language)
    try:
        admitted = admit(hub, request)
    except AdmissionRefused as exc:
        log.warning("media stream refused: %s", exc.code if exc.busy else exc.message)
        await _safe_close(ws, CLOSE_TRY_AGAIN if exc.busy else CLOSE_POLICY, exc.code)
        return
    with admitted:
        info = admitted.info
        transport = MediaStreamTransport(
            call_id=info.call_id, stream_sid=start.stream_id, call_sid=start.carrier_call_id,
            send_text=ws.send_text, close=lambda code, reason: _safe_close(ws, code, reason), codec=codec,
            on_transfer=on_transfer, default_transfer=default_transfer)
        clog = call_log("carecall.telephony.media_streams", info.call_id)
        clog.info("media stream started (%s, %s)", info.language, info.mode)
        transport.start()
        call_task = asyncio.create_task(admitted.run(transport), name=f"call-{info.call_id}")
        reader = asyncio.create_task(_read_loop(ws, transport, clog), name=f"ms-read-{info.call_id}")
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
            reader.cancel()
            await transport.aclose()
            await _safe_close(ws, 1000, "call ended")
            clog.info("media stream closed")


async def _await_start(ws: WebSocket, codec: CarrierCodec) -> StreamStart | None:
    """Read up to the start message; anything else before it is logged and ignored."""
    deadline = time.monotonic() + START_TIMEOUT_S
    once = LogOnce(log)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("media stream: no start message within %.0f s", START_TIMEOUT_S)
            return None
        try:
            text = await asyncio.wait_for(ws.receive_text(), left)
        except (TimeoutError, WebSocketDisconnect, RuntimeError, KeyError):
            return None
        msg = _parse(text, once)
        if msg is None:
            continue
        try:
            start = codec.parse_start(msg)
        except CarrierProtocolError as exc:
            if exc.key == "before-start":
                once.warning(exc.key, "media stream: %s", str(exc))
                continue
            log.warning("media stream: %s", exc)
            return None
        if start is not None:
            return start


def _parse(text: str, once: LogOnce) -> dict[str, Any] | None:
    if len(text) > MAX_MESSAGE_CHARS:
        once.warning("size", "media stream: ignoring an oversized message")
        return None
    try:
        msg = json_loads(text)  # bounded nesting, finite numbers
    except (ValueError, RecursionError):
        once.warning("json", "media stream: ignoring a message that is not JSON")
        return None
    if not isinstance(msg, dict):
        once.warning("obj", "media stream: ignoring a JSON message that is not an object")
        return None
    return msg


async def _read_loop(ws: WebSocket, transport: MediaStreamTransport,
                     clog: logging.LoggerAdapter[logging.Logger]) -> None:
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
            msg = _parse(text, once)
            if msg is None:
                continue
            transport.handle(msg)
            if transport.inbound.hung_up:
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
