"""The widget's WebRTC transport: one aiortc peer connection seen by the call loop as a `Transport`.

Inbound: the browser's Opus track is decoded by aiortc (48 kHz) and mixed to mono; the call loop
resamples. Outbound: `BotAudioTrack.recv()` hands aiortc one 20 ms frame per tick from the shared paced
output, which `clear()` empties at once, so barge-in silences the bot within a frame plus the browser's jitter
buffer. Captions and state travel as JSON on the "events" data channel (see messages.py).

It lives in web/widget/ rather than voice/ because only the widget's signalling creates it and it is
the one module tied to aiortc; voice/ stays free of a network stack, like telephony/ keeps its own.
"""

from __future__ import annotations

import asyncio
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
from voice.events import CallerAudio, CallerHangup, CallEvent, Dtmf
from voice.pacing import PacedOutput
from voice.transports.base import PacedTransport
from web.widget.messages import dumps, event_message, parse_client_message

log = logging.getLogger("carecall.widget.rtc")

OPUS_RATE = 48_000
FRAME_MS = 20


class BotAudioTrack(MediaStreamTrack):
    """The bot's voice as an aiortc audio track: aiortc asks for one frame at a time and the shared
    paced output (pull mode) hands out the next 20 ms of bot audio when it is due, silence when
    nothing is queued. Its `clear()` drops everything not yet handed to the encoder."""

    kind = "audio"

    def __init__(self, output: PacedOutput | None = None) -> None:
        super().__init__()
        self.output = output or PacedOutput(OPUS_RATE, lead_s=0.0, max_ahead_s=0.5, name="webrtc-out")
        self.sample_rate = self.output.sample_rate
        self.frame_samples = self.output.frame_samples
        self._time_base = fractions.Fraction(1, self.sample_rate)
        self._pts = 0
        self.frames_sent = 0  # every frame handed to aiortc, speech or silence

    @property
    def queued_s(self) -> float:
        return self.output.queued_s

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pcm = await self.output.pull_frame()
        frame = av.AudioFrame.from_ndarray(pcm.samples.reshape(1, -1), format="s16", layout="mono")
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
        return np.asarray(np.clip(mono * 32767.0, -32768, 32767), dtype=np.int16)
    return np.asarray(mono, dtype=np.float64).astype(np.int16)


class WebRtcTransport(PacedTransport):
    """One widget call's audio and events over one peer connection (the `Transport` protocol).
    Caller audio reaches the loop at the decoder's rate (48 kHz; the loop resamples)."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        *,
        emergency_number: str,
        input_rate: int = OPUS_RATE,  # the rate aiortc's Opus decoder delivers; audio keeps its own rate
        output_rate: int = OPUS_RATE,
        max_ahead_s: float = 0.5,
        max_inbound_s: float = 30.0,
    ) -> None:
        super().__init__(input_rate=input_rate, output_rate=output_rate, send_frame=None, lead_s=0.0,
                         max_ahead_s=max_ahead_s, max_backlog_s=max_inbound_s, name="webrtc")
        self.pc = pc
        self.emergency_number = emergency_number
        self.track = BotAudioTrack(self.output)
        self._channel: RTCDataChannel | None = None
        self._pending: list[str] = []  # messages waiting for the data channel to open
        self._reader: asyncio.Task[None] | None = None
        self._hung_up = False
        self._closed = False
        self.closed = asyncio.Event()
        self.frames_in = 0
        pc.on("datachannel", self._attach_channel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

    @property
    def frames_dropped(self) -> int:
        return round(self.inbound.dropped_s / (FRAME_MS / 1000))

    @property
    def gone(self) -> bool:
        return self._closed or self.output.closed

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
            self.inbound.put(event)

    def _caller_gone(self, reason: str) -> None:
        if not self._hung_up:
            self._hung_up = True
            self.inbound.put(CallerHangup(reason))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if self._hung_up or not isinstance(frame, av.AudioFrame):
                    continue
                mono = frame_to_mono(frame)
                if len(mono):
                    self.inbound.put_audio(CallerAudio(Pcm(mono, frame.sample_rate)))
                    self.frames_in += 1
        except MediaStreamError:
            pass
        finally:
            self._caller_gone("caller's audio ended")

    # --- the wire side of the Transport ----------------------------------------------------------
    async def on_clear(self) -> None:
        self.send_message({"type": "clear"})  # as on /ws/call; the browser has nothing queued to drop

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
        if not self._closed:
            await self.output.wait_for_playout(min(self.output.queued_s + 0.5, 10.0))
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
        await self.output.close()  # releases a send_audio waiting on back-pressure
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
