"""The one phone transport that Media Streams (any carrier codec) and SIP/RTP build on: 8 kHz
audio both ways (the call loop resamples), the shared paced output and inbound policy, the caller
going away, hang-up after the last words, and transfer as a typed capability."""

from __future__ import annotations

import numpy as np

from telephony.common import LogOnce, call_log
from voice import g711
from voice.audio import Pcm
from voice.events import AudioDropped, CallerAudio, CallerHangup
from voice.pacing import SendFrame, SendRaw
from voice.transports.base import PacedTransport

DRAIN_S = 15.0  # at most this long for the last words before a hang-up


class PhoneTransport(PacedTransport):
    def __init__(
        self,
        *,
        call_id: str,
        log_name: str,
        send_frame: SendFrame,
        send_raw: SendRaw | None = None,
        lead_s: float = 0.06,
        idle_frames: bool = False,
        max_ahead_s: float = 1.0,
    ) -> None:
        super().__init__(input_rate=g711.SAMPLE_RATE, output_rate=g711.SAMPLE_RATE, send_frame=send_frame,
                         send_raw=send_raw, lead_s=lead_s, idle_frames=idle_frames, max_ahead_s=max_ahead_s,
                         name=f"phone:{call_id[:8]}")
        self.call_id = call_id
        self._log = call_log(log_name, call_id)
        self._once = LogOnce(self._log)
        self._ended = False  # the caller side is gone
        self._closed = False  # we ended the call

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.output.start()

    async def aclose(self) -> None:
        self._closed = True
        await self.output.close()

    @property
    def gone(self) -> bool:
        return self._ended or self._closed or self.output.closed

    def caller_gone(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.output.clear()
        self.inbound.put(CallerHangup(reason))

    # --- inbound -----------------------------------------------------------------------------
    def caller_audio(self, samples: np.ndarray) -> None:
        if len(samples) and not self._ended:
            self.inbound.put_audio(CallerAudio(Pcm(samples, g711.SAMPLE_RATE)))

    def on_audio_dropped(self, notice: AudioDropped) -> None:
        self._once.warning("inq", "caller audio dropped (%s)", notice.reason)

    # --- outbound ----------------------------------------------------------------------------
    async def wait_played(self, timeout: float = DRAIN_S) -> bool:
        """Until every queued bot frame has been played (or the caller is gone)."""
        return await self.wait_for_playout(timeout)
