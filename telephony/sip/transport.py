"""`RtpTransport`: a SIP call's media as a `voice.ports.Transport`, so SIP calls run through the
hub like every other call. Only the RTP wire is here: caller packets are reordered (jitter buffer)
and decoded from G.711 (8 kHz; the call loop resamples); bot audio goes out through the shared paced
output as steady 20 ms packets (silence when the bot is quiet, nothing while the caller holds us),
DTMF as RFC 4733 telephone-events in the same frame slots."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from telephony.phone import DRAIN_S, PhoneTransport
from telephony.sip.rtp import JitterBuffer, RtpPacket, RtpSession, dtmf_payload, parse_dtmf
from voice import g711
from voice.audio import Pcm
from voice.events import Dtmf

FRAME = 160
FRAME_S = 0.02
MAX_GAP_FILL = 10  # lost packets replaced by silence (longer gaps are the peer pausing)
JITTER_TAIL_S = 0.06  # the peer's jitter buffer still plays this much after our last packet


@dataclass(frozen=True, slots=True)
class _DtmfOut:
    payload: bytes
    timestamp: int
    marker: bool


class RtpTransport(PhoneTransport):
    def __init__(
        self,
        *,
        call_id: str,
        rtp: RtpSession,
        codec: g711.G711,
        dtmf_pt: int | None,
        input_rate: int | None = None,  # accepted for older callers; audio arrives at 8 kHz (the loop resamples)
        on_hangup: Callable[[str], Awaitable[None]] | None = None,
        on_transfer: Callable[[str], Awaitable[bool]] | None = None,
        lead_s: float = 0.04,
    ) -> None:
        super().__init__(call_id=call_id, log_name="carecall.telephony.sip", send_frame=self._send,
                         send_raw=self._send_dtmf_packet, lead_s=lead_s, idle_frames=True)
        self.rtp = rtp
        self.codec = codec
        self.dtmf_pt = dtmf_pt
        self._on_hangup = on_hangup
        self._on_transfer = on_transfer
        self.jitter = JitterBuffer()
        self._ssrc: int | None = None
        self._last_dtmf_ts: int | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.on_hold = False
        self.received_digits: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"rtp-jb-{self.call_id}")

    async def aclose(self) -> None:
        if self._flusher:
            self._flusher.cancel()
        await super().aclose()
        self.rtp.close()

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
        self.inbound.put(Dtmf(digit))

    def _deliver(self, pkt: RtpPacket, lost: int) -> None:
        if 0 < lost <= MAX_GAP_FILL:
            self.caller_audio(np.zeros(lost * FRAME, np.int16))
        if pkt.payload:
            self.caller_audio(self.codec.decode(pkt.payload).samples)

    async def _flush_loop(self) -> None:
        while True:
            await self.clock.sleep(FRAME_S)
            for pkt, lost in self.jitter.pop_ready():
                self._deliver(pkt, lost)

    # --- outbound ----------------------------------------------------------------------------
    async def _send(self, frame: Pcm, bot: bool) -> None:
        marker = bot and self.output.talkspurt_start
        self.rtp.send(self.codec.payload_type, self.codec.encode(frame), marker=marker)

    async def _send_dtmf_packet(self, item: object) -> None:
        assert isinstance(item, _DtmfOut)
        self.rtp.send(self.dtmf_pt or 101, item.payload, marker=item.marker, advance=False, timestamp=item.timestamp)

    async def send_dtmf(self, digits: str, duration_s: float = 0.1) -> None:
        """RFC 4733 key presses (e.g. to get through a hospital IVR on an outbound call)."""
        if self.dtmf_pt is None:
            raise RuntimeError("the peer did not negotiate telephone-event")
        silence = Pcm.silence(FRAME_S * 3, g711.SAMPLE_RATE)
        for digit in digits:
            ts = self.rtp.timestamp
            steps = max(1, round(duration_s / FRAME_S))
            frames: list[object] = []
            for i in range(1, steps + 1):
                frames.append(_DtmfOut(dtmf_payload(digit, i * FRAME, False), ts, i == 1))
            frames += [_DtmfOut(dtmf_payload(digit, steps * FRAME, True), ts, False)] * 3
            self.rtp.timestamp = (ts + steps * FRAME) & 0xFFFFFFFF
            self.output.push_raw(frames)
            await self.output.push(silence)  # a gap between keys
        await self.output.wait_for_playout(10)

    async def hangup(self, reason: str) -> None:
        if self._closed:
            return
        if not self._ended:
            await self.wait_played()
            await self.clock.sleep(JITTER_TAIL_S)
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


__all__ = ["DRAIN_S", "RtpTransport"]
