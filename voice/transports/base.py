"""What every transport shares, so that each one keeps only its wire format.

`PacedTransport` owns the one paced output (voice.pacing) and the one inbound policy
(voice.inbound) and implements the `voice.ports.Transport` methods on them. A transport subclass
(WebSocket, WebRTC, Media Streams, RTP) turns wire messages into `inbound.put*()` calls and sends the
frames `send_frame` is given; it may override `on_clear` to tell the far end (Twilio `clear`, the
widget's `{"type": "clear"}`).

Audio leaves and enters at the wire's own rate: only the call loop resamples.
"""

from __future__ import annotations

from voice.audio import Pcm
from voice.clock import LOOP_CLOCK, Clock
from voice.events import AudioDropped, CallEvent, InboundEvent
from voice.inbound import InboundQueue
from voice.pacing import PacedOutput, SendFrame, SendRaw


class PacedTransport:
    def __init__(
        self,
        *,
        input_rate: int,
        output_rate: int,
        send_frame: SendFrame | None,
        send_raw: SendRaw | None = None,
        lead_s: float = 0.06,
        max_ahead_s: float = 1.0,
        idle_frames: bool = False,
        burst_s: float = 2.0,
        max_backlog_s: float = 10.0,
        clock: Clock | None = None,
        name: str = "transport",
    ) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.clock = clock or LOOP_CLOCK
        self.output = PacedOutput(output_rate, send=send_frame, send_raw=send_raw, lead_s=lead_s,
                                  max_ahead_s=max_ahead_s, idle_frames=idle_frames, clock=self.clock,
                                  name=f"{name}-out")
        self.inbound = InboundQueue(burst_s=burst_s, max_backlog_s=max_backlog_s, clock=self.clock,
                                    on_drop=self.on_audio_dropped)

    # --- hooks for the wire ------------------------------------------------------------------
    @property
    def gone(self) -> bool:
        """True once bot audio can no longer reach the caller (hung up, socket closed)."""
        return self.output.closed

    async def on_clear(self) -> None:
        """Tell the far end to drop audio it holds (barge-in)."""
        return None

    def on_audio_dropped(self, notice: AudioDropped) -> None:
        """Caller audio was dropped (too fast or the loop is behind); a transport may tell its client."""
        return None

    # --- voice.ports.Transport ---------------------------------------------------------------
    async def receive(self) -> InboundEvent:
        return await self.inbound.get()

    async def send_audio(self, audio: Pcm) -> None:
        if self.gone or not len(audio):
            return
        await self.output.push(audio)

    async def clear(self) -> float:
        heard = self.output.clear()
        if not self.gone:
            await self.on_clear()
        return heard

    def played_s(self) -> float:
        return self.output.played_s()

    def hold(self) -> None:
        self.output.hold()

    def release(self) -> None:
        self.output.release()

    def mark_turn(self) -> None:
        self.output.begin_segment()

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        if self.gone:
            return True
        return await self.output.wait_for_playout(timeout)

    async def send_event(self, event: CallEvent) -> None:
        return None
