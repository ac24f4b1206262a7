"""A real aiortc client peer for the widget's tests: sends a tone (or silence) as the caller's
microphone, records what the server sends back, and reads the events data channel."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

RATE = 48_000
FRAME = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A caller's microphone playing a sine tone (amplitude 0 = silence), paced in real time."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(FRAME) + self._pts) / RATE
        samples = (self.amplitude * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float32)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean((samples.astype(np.float32) / 32768) ** 2))) if len(samples) else 0.0


class ClientPeer:
    """The browser's side of a widget call, played by aiortc."""

    def __init__(self, mic: MediaStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = mic or ToneTrack()
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events")
        self.messages: list[dict[str, Any]] = []
        self.received: list[tuple[float, np.ndarray]] = []  # (arrival time, mono int16 48 kHz)
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("message", lambda m: self.messages.append(json.loads(m)))
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                self.received.append((time.monotonic(), data.astype(np.int16)))

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers all candidates
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def accept(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    def audio_since(self, since: float, until: float | None = None) -> np.ndarray:
        parts = [a for t, a in self.received if t >= since and (until is None or t <= until)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def wait_message(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if m.get("type") == kind:
                    return m
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind!r} message; got {self.messages}")

    async def wait_state(self, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != state and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert self.pc.connectionState == state, self.pc.connectionState

    async def close(self) -> None:
        await self.pc.close()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
