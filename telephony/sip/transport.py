"""`RtpTransport`: a SIP call's media as a `voice.ports.Transport`, so SIP calls run through
`CallHub.run` like every other call. Caller audio is reordered (jitter buffer), decoded from G.711
and resampled to `input_rate`; bot audio is encoded and sent in steady 20 ms packets (silence when
the bot is quiet, nothing while the caller holds us)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from telephony.common import LogOnce, call_log, caller_resampler
from telephony.pacing import FramePacer
from telephony.sip.rtp import JitterBuffer, RtpPacket, RtpSession, dtmf_payload, parse_dtmf
from voice import g711
from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup, CallEvent, Dtmf, InboundEvent
from voice.resample import resample

FRAME = 160
FRAME_S = 0.02
MAX_GAP_FILL = 10  # lost packets replaced by silence (longer gaps are the peer pausing)
MAX_INBOUND_QUEUE = 500
DRAIN_S = 15.0


@dataclass(frozen=True, slots=True)
class _DtmfOut:
    payload: bytes
    timestamp: int
    marker: bool


class RtpTransport:
    def __init__(
        self,
        *,
        call_id: str,
        rtp: RtpSession,
        codec: g711.G711,
        dtmf_pt: int | None,
        input_rate: int = 16000,
        on_hangup: Callable[[str], Awaitable[None]] | None = None,
        on_transfer: Callable[[str], Awaitable[bool]] | None = None,
        lead_s: float = 0.04,
    ) -> None:
        self.input_rate = input_rate
        self.output_rate = g711.SAMPLE_RATE
        self.call_id = call_id
        self.rtp = rtp
        self.codec = codec
        self.dtmf_pt = dtmf_pt
        self._on_hangup = on_hangup
        self._on_transfer = on_transfer
        self._log = call_log("carecall.telephony.sip", call_id)
        self._once = LogOnce(self._log)
        self.jitter = JitterBuffer()
        self._ssrc: int | None = None
        self._last_dtmf_ts: int | None = None
        self._resampler = caller_resampler(input_rate)
        self._inbound: asyncio.Queue[InboundEvent] = asyncio.Queue(MAX_INBOUND_QUEUE)
        self._pacer = FramePacer(self._send, frame_s=FRAME_S, lead_s=lead_s,
                                 idle_frame=bytes([codec.silence_byte]) * FRAME)
        self._flusher: asyncio.Task[None] | None = None
        self._ended = False
        self._closed = False
        self.on_hold = False
        # played_s accounting
        self._sent_frames = 0
        self._first_sent_at: float | None = None
        self._offset_s = 0.0
        self._frozen: float | None = None
        self.received_digits: list[str] = []
        self._tail = np.zeros(0, np.int16)  # < 20 ms of bot audio waiting for the next piece

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._pacer.start()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"rtp-jb-{self.call_id}")

    async def aclose(self) -> None:
        self._closed = True
        if self._flusher:
            self._flusher.cancel()
        await self._pacer.close()
        self.rtp.close()

    def caller_gone(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._pacer.clear()
        self._put(CallerHangup(reason))

    def set_hold(self, held: bool) -> None:
        """The caller put us on hold (a=sendonly/inactive): stop sending, keep the clock."""
        if held != self.on_hold:
            self._log.info("call %s", "on hold" if held else "resumed")
        self.on_hold = held
        self.rtp.sending = not held

    # --- inbound -----------------------------------------------------------------------------
    def on_packet(self, pkt: RtpPacket) -> None:
        if self._ended:
            return
        if self._ssrc is not None and pkt.ssrc != self._ssrc:
            self._log.info("caller's RTP stream changed (new SSRC); resetting the jitter buffer")
            self.jitter.reset()
        self._ssrc = pkt.ssrc
        if pkt.payload_type == self.dtmf_pt or (pkt.payload_type != self.codec.payload_type):
            self._on_dtmf(pkt)
            return
        for ready, lost in self.jitter.push(pkt):
            self._deliver(ready, lost)

    def _on_dtmf(self, pkt: RtpPacket) -> None:
        parsed = parse_dtmf(pkt.payload)
        if parsed is None:
            self._once.warning("dtmf", "ignoring a telephone-event that is not a DTMF digit")
            return
        digit, _end, _duration = parsed
        if pkt.timestamp == self._last_dtmf_ts:
            return  # the same key press (continuation or one of the three end packets)
        self._last_dtmf_ts = pkt.timestamp
        self.received_digits.append(digit)
        self._put(Dtmf(digit))

    def _deliver(self, pkt: RtpPacket, lost: int) -> None:
        if 0 < lost <= MAX_GAP_FILL:
            self._emit(np.zeros(lost * FRAME, np.int16))
        if pkt.payload:
            self._emit(self.codec.decode(pkt.payload).samples)

    def _emit(self, samples8k: np.ndarray) -> None:
        pcm = self._resampler.process(Pcm(samples8k, g711.SAMPLE_RATE))
        if len(pcm):
            self._put(CallerAudio(pcm))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FRAME_S)
            for pkt, lost in self.jitter.pop_ready():
                self._deliver(pkt, lost)

    def _put(self, event: InboundEvent) -> None:
        try:
            self._inbound.put_nowait(event)
        except asyncio.QueueFull:
            if isinstance(event, CallerHangup):
                self._inbound.get_nowait()
                self._inbound.put_nowait(event)
            else:
                self._once.warning("inq", "call loop is behind; dropping caller audio")

    async def receive(self) -> InboundEvent:
        if self._ended and self._inbound.empty():
            return CallerHangup("caller hung up")
        return await self._inbound.get()

    # --- outbound ----------------------------------------------------------------------------
    async def _send(self, frame: Any, bot: bool) -> None:
        if isinstance(frame, _DtmfOut):
            self.rtp.send(self.dtmf_pt or 101, frame.payload, marker=frame.marker, advance=False,
                          timestamp=frame.timestamp)
            return
        if bot:
            if self._first_sent_at is None:
                self._first_sent_at = time.monotonic()
            self._sent_frames += 1
        self.rtp.send(self.codec.payload_type, frame, marker=bot and self._sent_frames == 1)

    async def send_audio(self, audio: Pcm) -> None:
        if self._ended or self._closed or not len(audio):
            return
        if self._frozen is not None:
            self._segment(self._frozen)
        if audio.sample_rate != g711.SAMPLE_RATE:
            audio = resample(audio, g711.SAMPLE_RATE)
        samples = np.concatenate([self._tail, audio.samples]) if len(self._tail) else audio.samples
        whole = len(samples) - len(samples) % FRAME
        self._tail = samples[whole:]
        if whole:
            self._push(samples[:whole])

    def _push(self, samples: np.ndarray) -> None:
        encoded = self.codec.encode(Pcm(np.ascontiguousarray(samples), g711.SAMPLE_RATE))
        self._pacer.push([encoded[i:i + FRAME] for i in range(0, len(encoded), FRAME)])

    def _flush_tail(self) -> None:
        if len(self._tail):
            tail = np.concatenate([self._tail, np.zeros(FRAME - len(self._tail), np.int16)])
            self._tail = np.zeros(0, np.int16)
            self._push(tail)

    async def send_dtmf(self, digits: str, duration_s: float = 0.1) -> None:
        """RFC 4733 key presses (e.g. to get through a hospital IVR on an outbound call)."""
        if self.dtmf_pt is None:
            raise RuntimeError("the peer did not negotiate telephone-event")
        for digit in digits:
            ts = self.rtp.timestamp
            steps = max(1, round(duration_s / FRAME_S))
            frames: list[Any] = []
            for i in range(1, steps + 1):
                frames.append(_DtmfOut(dtmf_payload(digit, i * FRAME, False), ts, i == 1))
            frames += [_DtmfOut(dtmf_payload(digit, steps * FRAME, True), ts, False)] * 3
            self.rtp.timestamp = (ts + steps * FRAME) & 0xFFFFFFFF
            self._pacer.push(frames)
            self._pacer.push([bytes([self.codec.silence_byte]) * FRAME] * 3)  # a gap between keys
        await self._pacer.drained(10)

    async def clear(self) -> None:
        heard = self.played_s()
        self._pacer.clear()
        self._tail = np.zeros(0, np.int16)
        self._frozen = heard

    def _segment(self, offset: float) -> None:
        self._offset_s = offset
        self._sent_frames = 0
        self._first_sent_at = None
        self._frozen = None

    def played_s(self) -> float:
        """RTP has no playback receipts: what was sent, less the lead we send ahead of time."""
        if self._frozen is not None:
            return self._frozen
        if self._first_sent_at is None:
            return self._offset_s
        elapsed = time.monotonic() - self._first_sent_at - self._pacer.lead_s
        return self._offset_s + max(0.0, min(self._sent_frames * FRAME_S, elapsed))

    def mark_turn(self) -> None:
        self._tail = np.zeros(0, np.int16)
        self._segment(0.0)

    async def send_event(self, event: CallEvent) -> None:
        return None

    async def wait_played(self, timeout: float = DRAIN_S) -> bool:
        self._flush_tail()
        ok = await self._pacer.drained(timeout)
        if ok and not self._ended:
            await asyncio.sleep(self._pacer.lead_s + 0.06)  # the peer's jitter buffer plays the tail
        return ok

    async def hangup(self, reason: str) -> None:
        if self._closed:
            return
        if not self._ended:
            await self.wait_played()
        self._log.info("hanging up: %s", reason)
        self._ended = True
        if self._on_hangup is not None:
            await self._on_hangup(reason)

    async def transfer(self, target: str) -> bool:
        """Blind transfer (REFER) after the bot's last words; True once the peer accepted it."""
        if self._ended or self._on_transfer is None:
            return False
        await self.wait_played()
        return await self._on_transfer(target)
