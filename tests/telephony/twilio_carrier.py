"""A strict stand-in for Twilio's side of a bidirectional Media Stream, written from the documented
protocol, for what streamdouble does not model:

* agent audio is played out of a buffer in real time (20 ms per frame) and what was played is kept;
* a `mark` is echoed when the audio queued before it has been played;
* on `clear` the buffer is emptied and every pending mark is echoed at once (Twilio's documented
  behaviour); `marks_on_clear=False` reproduces streamdouble's gap (they are dropped);
* every message from the agent is checked (JSON, event, streamSid, base64 μ-law payload).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from telephony.stream_auth import TOKEN_PARAMETER, fetch_stream_parameters
from voice import g711


@dataclass
class CarrierLog:
    media_arrivals: list[float] = field(default_factory=list)  # monotonic time of each agent frame
    heard: list[bytes] = field(default_factory=list)  # agent frames actually played
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[tuple[str, float, bool]] = field(default_factory=list)  # name, when, by clear
    clears: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    closed_by_agent: bool = False

    @property
    def heard_s(self) -> float:
        return len(self.heard) * 0.02

    def heard_pcm(self) -> np.ndarray:
        return g711.ulaw_decode(b"".join(self.heard)) if self.heard else np.zeros(0, np.int16)


class StrictCarrier:
    def __init__(self, url: str, *, custom: dict[str, str] | None = None, marks_on_clear: bool = True,
                 call_sid: str | None = None) -> None:
        self.url = url
        self.custom = custom or {}
        self.marks_on_clear = marks_on_clear
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.log = CarrierLog()
        self._seq = 0
        self._chunk = 0
        self._buffer: deque[bytes | str] = deque()
        self._ws: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._t0 = 0.0

    async def __aenter__(self) -> StrictCarrier:
        if TOKEN_PARAMETER not in self.custom:  # as Twilio does: the TwiML's parameters, token included
            self.custom = await fetch_stream_parameters(self.url, self.custom)
        self._ws = await websockets.connect(self.url, max_size=2**20)
        self._t0 = time.monotonic()
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"}, seq=False)
        await self.send({"event": "start", "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": self.custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._receiver()), asyncio.create_task(self._player())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send(self, msg: dict[str, Any], *, seq: bool = True) -> None:
        if seq:
            self._seq += 1
            msg = {"sequenceNumber": str(self._seq), **msg, "streamSid": msg.get("streamSid", self.stream_sid)}
        await self._ws.send(json.dumps(msg))

    async def send_raw(self, data: str | bytes) -> None:
        await self._ws.send(data)

    async def media(self, payload: bytes) -> None:
        self._chunk += 1
        await self.send({"event": "media", "media": {
            "track": "inbound", "chunk": str(self._chunk),
            "timestamp": str(int((time.monotonic() - self._t0) * 1000)),
            "payload": base64.b64encode(payload).decode()}})

    async def stream(self, samples: np.ndarray) -> None:
        """Caller audio (8 kHz int16) in real time, 20 ms per message."""
        data = g711.ulaw_encode(samples)
        start = time.monotonic()
        for i in range(0, len(data), 160):
            await self.media(data[i:i + 160].ljust(160, b"\xff"))
            delay = start + (i // 160 + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def silence(self, seconds: float) -> None:
        await self.stream(np.zeros(int(seconds * 8000), np.int16))

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(Exception):
            await self.send({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
        await asyncio.sleep(0.1)
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._ws = None

    async def wait_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.closed_by_agent:
                return True
            await asyncio.sleep(0.02)
        return False

    # --- what the agent sends ----------------------------------------------------------------
    async def _receiver(self) -> None:
        try:
            async for message in self._ws:
                self._on_message(message)
        except websockets.ConnectionClosed:
            pass
        self.log.closed_by_agent = True

    def _violation(self, what: str) -> None:
        self.log.violations.append(what)

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            return self._violation("binary frame")
        try:
            msg = json.loads(message)
        except ValueError:
            return self._violation("not JSON")
        event = msg.get("event")
        if event in ("media", "mark", "clear") and msg.get("streamSid") != self.stream_sid:
            return self._violation(f"{event} with wrong streamSid")
        if event == "media":
            try:
                payload = base64.b64decode(msg["media"]["payload"], validate=True)
            except Exception:
                return self._violation("bad media payload")
            if not payload:
                return self._violation("empty media payload")
            self.log.media_arrivals.append(time.monotonic())
            for i in range(0, len(payload), 160):
                self._buffer.append(payload[i:i + 160])
        elif event == "mark":
            name = (msg.get("mark") or {}).get("name")
            if not isinstance(name, str):
                return self._violation("mark without name")
            self.log.marks_received.append(name)
            self._buffer.append(name)
        elif event == "clear":
            self.log.clears.append(time.monotonic())
            pending = [i for i in self._buffer if isinstance(i, str)]
            self._buffer.clear()
            if self.marks_on_clear:
                for name in pending:
                    self._echo(name, by_clear=True)
        else:
            self._violation(f"unknown event {event!r}")

    def _echo(self, name: str, by_clear: bool = False) -> None:
        self.log.marks_echoed.append((name, time.monotonic(), by_clear))
        asyncio.get_running_loop().create_task(
            self.send({"event": "mark", "mark": {"name": name}}))

    async def _player(self) -> None:
        """Twilio plays buffered agent audio to the caller at 8000 samples a second."""
        next_t = time.monotonic()
        while True:
            while self._buffer and isinstance(self._buffer[0], str):
                self._echo(self._buffer.popleft())  # type: ignore[arg-type]
            if self._buffer:
                self.log.heard.append(self._buffer.popleft())  # type: ignore[arg-type]
                next_t += 0.02
            else:
                next_t = time.monotonic() + 0.005
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
