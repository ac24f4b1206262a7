"""The widget's WebRTC transport: one aiortc peer connection seen by the call loop as a `Transport`.

Inbound: the browser's Opus track is decoded by aiortc (48 kHz), mixed to mono and resampled to the
loop's rate. Outbound: `BotAudioTrack.recv()` hands aiortc one 20 ms frame per tick from a queue that
`clear()` empties at once, so barge-in silences the bot within a frame plus the browser's jitter
buffer. Captions and state travel as JSON on the "events" data channel (see messages.py).

It lives in web/widget/ rather than voice/ because only the widget's signalling creates it and it is
the one module tied to aiortc; voice/ stays free of a network stack, like telephony/ keeps its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup, CallEvent, Dtmf, InboundEvent
from voice.resample import StreamResampler
from web.widget.messages import dumps, event_message, parse_client_message

log = logging.getLogger("carecall.widget.rtc")

OPUS_RATE = 48_000
FRAME_MS = 20


class BotAudioTrack(MediaStreamTrack):
    """The bot's voice as an aiortc audio track: 20 ms mono frames on a steady clock, silence when
    nothing is queued. `clear()` drops everything not yet handed to the encoder."""

    kind = "audio"

    def __init__(self, sample_rate: int = OPUS_RATE, frame_ms: int = FRAME_MS) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._frame_s = frame_ms / 1000
        self._time_base = fractions.Fraction(1, sample_rate)
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0  # samples waiting
        self._pts = 0
        self._clock_start: float | None = None
        self._played = 0  # bot samples handed out since the last mark/clear
        self.changed = asyncio.Event()  # set whenever the queue shrinks
        self.frames_sent = 0

    # --- producer side ---------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples.astype(np.int16, copy=False))
            self._queued += len(samples)

    def clear(self) -> float:
        dropped = self._queued / self.sample_rate
        self._chunks.clear()
        self._queued = 0
        self._played = 0
        self.changed.set()
        return dropped

    @property
    def queued_s(self) -> float:
        return self._queued / self.sample_rate

    def played_s(self) -> float:
        return self._played / self.sample_rate

    def mark(self) -> None:
        self._played = 0

    # --- aiortc side ------------------------------------------------------------------------------
    def _take(self, n: int) -> tuple[np.ndarray, int]:
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, len(chunk))
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        self._queued -= filled
        return out, filled

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now
        else:
            wait = self._clock_start + self._pts / self.sample_rate - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.25:  # the loop stalled: restart the clock rather than burst to catch up
                self._clock_start = now - self._pts / self.sample_rate
        samples, filled = self._take(self.frame_samples)
        self._played += filled
        if filled:
            self.changed.set()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += self.frame_samples
        self.frames_sent += 1
        return frame


def frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Any decoded audio frame as mono int16 (aiortc's Opus decoder gives packed stereo s16)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data.mean(axis=0) if channels > 1 else data[0]
    else:
        mono = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.reshape(-1)
    if frame.format.name.startswith("flt"):
        return np.clip(mono * 32767.0, -32768, 32767).astype(np.int16)
    return np.asarray(mono).astype(np.int16)


class WebRtcTransport:
    """One widget call's audio and events over one peer connection (the `Transport` protocol)."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        *,
        emergency_number: str,
        input_rate: int = 16_000,
        output_rate: int = OPUS_RATE,
        max_ahead_s: float = 0.5,
        max_inbound_s: float = 30.0,
    ) -> None:
        self.pc = pc
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.emergency_number = emergency_number
        self.track = BotAudioTrack(OPUS_RATE)
        self._max_ahead_s = max_ahead_s
        self._inbound: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self._max_inbound = int(max_inbound_s * 1000 / FRAME_MS)
        self._out_resamplers: dict[int, StreamResampler] = {}
        self._channel: RTCDataChannel | None = None
        self._pending: list[str] = []  # messages waiting for the data channel to open
        self._reader: asyncio.Task[None] | None = None
        self._hung_up = False
        self._closed = False
        self.closed = asyncio.Event()
        self.frames_in = 0
        self.frames_dropped = 0
        pc.on("datachannel", self._attach_channel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

    # --- wiring ----------------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._caller_gone(f"connection {state}")
            if state == "failed":
                await self.close()

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events" or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)

        def _flush() -> None:
            for text in self._pending:
                channel.send(text)
            self._pending.clear()

        channel.on("open", _flush)
        if channel.readyState == "open":
            _flush()

    def _on_message(self, message: Any) -> None:
        event = parse_client_message(message)  # strict, bounded (web/widget/messages.py)
        if isinstance(event, CallerHangup):
            self._caller_gone(event.reason)
        elif isinstance(event, Dtmf):
            self._inbound.put_nowait(event)

    def _caller_gone(self, reason: str) -> None:
        if not self._hung_up:
            self._hung_up = True
            self._inbound.put_nowait(CallerHangup(reason))

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler: StreamResampler | None = None
        try:
            while True:
                frame = await track.recv()
                mono = frame_to_mono(frame)
                if resampler is None or resampler.in_rate != frame.sample_rate:
                    resampler = StreamResampler(frame.sample_rate, self.input_rate)
                out = resampler.process(Pcm(mono, frame.sample_rate))
                if not len(out) or self._hung_up:
                    continue
                if self._inbound.qsize() >= self._max_inbound:  # the loop is not reading: keep the newest
                    with contextlib.suppress(asyncio.QueueEmpty):
                        self._inbound.get_nowait()
                    self.frames_dropped += 1
                self._inbound.put_nowait(CallerAudio(out))
                self.frames_in += 1
        except MediaStreamError:
            pass
        finally:
            self._caller_gone("caller's audio ended")

    # --- Transport protocol ----------------------------------------------------------------------
    async def receive(self) -> InboundEvent:
        if self._hung_up and self._inbound.empty():
            return CallerHangup("caller hung up")
        return await self._inbound.get()

    async def send_audio(self, audio: Pcm) -> None:
        if self._closed or not len(audio):
            return
        samples = audio.samples
        if audio.sample_rate != OPUS_RATE:
            resampler = self._out_resamplers.get(audio.sample_rate)
            if resampler is None:
                resampler = self._out_resamplers[audio.sample_rate] = StreamResampler(
                    audio.sample_rate, OPUS_RATE
                )
            samples = resampler.process(audio).samples
        self.track.push(samples)
        # back-pressure: stay at most `max_ahead_s` ahead of what the caller hears
        while self.track.queued_s > self._max_ahead_s and not self._closed:
            self.track.changed.clear()
            await self.track.changed.wait()

    async def clear(self) -> None:
        self.track.clear()
        self.send_message({"type": "clear"})  # as on /ws/call; the browser has nothing queued to drop

    def played_s(self) -> float:
        return self.track.played_s()

    def mark_turn(self) -> None:
        self.track.mark()

    async def send_event(self, event: CallEvent) -> None:
        message = event_message(event, emergency_number=self.emergency_number)
        if message is not None:
            self.send_message(message)

    def send_message(self, message: dict[str, Any]) -> None:
        text = dumps(message)
        channel = self._channel
        if channel is None or channel.readyState == "connecting":
            if not self._closed:
                self._pending.append(text)
        elif channel.readyState == "open" and self._link_up(channel):
            channel.send(text)
        # else: the browser is gone; nothing to tell it

    @staticmethod
    def _link_up(channel: RTCDataChannel) -> bool:
        # a channel can still read "open" after the browser closed DTLS; sending then fails in an
        # aiortc task nobody awaits
        try:
            return channel.transport.transport.state == "connected"
        except AttributeError:
            return False

    async def hangup(self, reason: str) -> None:
        """Let queued speech finish (a goodbye), tell the client, then close the connection."""
        deadline = time.monotonic() + min(self.track.queued_s + 0.5, 10.0)
        while self.track.queued_s > 0 and time.monotonic() < deadline and not self._closed:
            self.track.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.track.changed.wait(), 0.2)
        self.send_message({"type": "hangup", "reason": reason})
        await self.close()

    # --- lifetime ---------------------------------------------------------------------------------
    async def wait_connected(self, within_s: float) -> bool:
        """True once ICE and DTLS are up; False when the connection fails or the time runs out."""
        if self.pc.connectionState == "connected":
            return True
        done = asyncio.Event()

        def _check() -> None:
            if self.pc.connectionState in ("connected", "failed", "closed"):
                done.set()

        self.pc.on("connectionstatechange", _check)
        try:
            await asyncio.wait_for(done.wait(), within_s)
        except TimeoutError:
            return False
        finally:
            self.pc.remove_listener("connectionstatechange", _check)
        return self.pc.connectionState == "connected"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.track.changed.set()  # release a send_audio waiting on back-pressure
        self._caller_gone("connection closed")
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            # give the last messages (hangup, outcome) a moment to leave
            deadline = time.monotonic() + 1.0
            while channel.bufferedAmount > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)
        self.track.stop()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.closed.set()
