"""The WebSocket call transport: JSON control messages plus binary PCM16 frames (README, "WebSocket
call protocol"). Malformed input gets an `error` message and is dropped; the call goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voice.audio import AudioFormatError, Pcm
from voice.events import AudioDropped, CallerAudio, CallerHangup, CallEvent, Dtmf
from voice.transports.base import PacedTransport
from voice.wire import SAMPLE_RATES, JsonInputError, ProtocolError, StartRequest, event_to_json, loads, parse_start

log = logging.getLogger("carecall.ws")

DTMF_DIGITS = set("0123456789*#ABCD")
MAX_ERRORS = 50  # a client that only sends garbage is cut off

# the start message and the JSON reader live with the rest of the wire format (voice/wire.py)
__all__ = ["SAMPLE_RATES", "ProtocolError", "StartRequest", "WebSocketTransport", "parse_start"]


class WebSocketTransport(PacedTransport):
    """Transport over one accepted WebSocket whose `start` message has been read: JSON control
    messages and binary PCM16 frames; pacing and the inbound policy come from `PacedTransport`."""

    def __init__(self, ws: WebSocket, start: StartRequest, *, max_message_bytes: int, call_id: str,
                 emergency_number: str | None = None) -> None:
        super().__init__(input_rate=start.sample_rate, output_rate=start.output_sample_rate,
                         send_frame=self._send_frame, name=f"ws:{call_id[:8]}")
        self.ws = ws
        self._max_bytes = max_message_bytes
        self._call_id = call_id
        self._emergency_number = emergency_number
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._errors = 0
        self._pending_notices: list[AudioDropped] = []
        self.closed = False

    async def start(self) -> None:
        self.output.start()
        self._reader = asyncio.create_task(self._read_loop(), name=f"ws-read:{self._call_id[:8]}")

    async def _send_frame(self, audio: Pcm, _bot: bool) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(audio.to_bytes())

    async def send_json(self, payload: dict[str, Any]) -> None:
        if self.closed or self.ws.application_state != WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            await self.ws.send_text(json.dumps(payload, ensure_ascii=False))

    async def _error(self, code: str, message: str) -> None:
        self._errors += 1
        log.info("call %s: client error %s", self._call_id[:8], code)
        await self.send_json({"type": "error", "code": code, "message": message})
        if self._errors >= MAX_ERRORS:
            await self._close(1008, "too many protocol errors")

    def on_audio_dropped(self, notice: AudioDropped) -> None:
        self._pending_notices.append(notice)  # told from the read loop (this hook cannot await)

    async def _read_loop(self) -> None:
        ended_by_caller = False
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data: bytes | None = msg.get("bytes")
                text: str | None = msg.get("text")
                if data is not None:
                    await self._on_bytes(data)
                elif text is not None and await self._on_text(text):
                    ended_by_caller = True  # the socket stays open for the final `ended` message
                    break
                while self._pending_notices:
                    notice = self._pending_notices.pop(0)
                    log.warning("call %s: caller audio dropped (%s), %.1f s so far", self._call_id[:8],
                                notice.reason, notice.total_s)
                    await self.send_json({"type": "error", "code": "audio_too_fast",
                                          "message": "audio must be sent in real time; the excess was dropped",
                                          "dropped_s": notice.total_s})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if not ended_by_caller:
                self.closed = True
                self.inbound.put(CallerHangup("caller disconnected"))

    async def _on_bytes(self, data: bytes) -> None:
        if len(data) > self._max_bytes:
            await self._error("frame_too_large", f"audio frames must be at most {self._max_bytes} bytes")
            return
        try:
            audio = Pcm.from_bytes(data, self.input_rate)
        except AudioFormatError as exc:
            await self._error("bad_audio_frame", str(exc))
            return
        if len(audio):
            self.inbound.put_audio(CallerAudio(audio))

    async def _on_text(self, text: str) -> bool:
        """Handle a control message; True when the caller ends the call."""
        if len(text) > self._max_bytes:
            await self._error("message_too_large", f"messages must be at most {self._max_bytes} bytes")
            return False
        try:
            msg = loads(text)
        except JsonInputError as exc:
            why = "text messages must be JSON control messages; audio goes in binary frames"
            await self._error(exc.code, why if exc.code == "bad_json" else str(exc))
            return False
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "end":
            self.inbound.put(CallerHangup("caller ended the call"))
            return True
        if kind == "dtmf":
            digit = msg.get("digit")
            if not isinstance(digit, str) or digit not in DTMF_DIGITS:
                await self._error("bad_dtmf", "digit must be one of 0-9 * # A-D")
            else:
                self.inbound.put(Dtmf(digit))
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "start":
            await self._error("already_started", "this call has already started")
        else:
            await self._error("unknown_event", f"unknown message type {str(kind)[:40]!r}")
        return False

    # --- the wire side of the Transport ------------------------------------------------------
    @property
    def gone(self) -> bool:
        return self.closed or self.output.closed

    async def on_clear(self) -> None:
        await self.send_json({"type": "clear"})

    async def send_event(self, event: CallEvent) -> None:
        payload = event_to_json(event, emergency_number=self._emergency_number)
        if payload is not None:
            await self.send_json(payload)

    async def hangup(self, reason: str) -> None:
        # let queued audio finish (a goodbye) before closing, up to a few seconds
        if not self.closed:
            await self.output.wait_for_playout(5.0)
        await self._close(1000, reason[:100])

    async def _close(self, code: int, reason: str) -> None:
        await self.output.close()
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)
        if self._reader and self._reader is not asyncio.current_task():
            self._reader.cancel()

    async def aclose(self) -> None:
        await self._close(1000, "call over")
