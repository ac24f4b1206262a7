"""Real-time pacing of bot audio, and the stereo call recording."""

from __future__ import annotations

import asyncio
import time
import wave

import numpy as np
import pytest

from voice.audio import Pcm
from voice.pacing import PacedSender
from voice.recording import StereoRecorder


def tone(seconds: float, rate: int = 16000, amp: int = 8000) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return Pcm((amp * np.sin(2 * np.pi * 440 * t)).astype(np.int16), rate)


async def test_audio_goes_out_in_real_time_and_clear_stops_it() -> None:
    sent: list[tuple[float, int]] = []

    async def send(frame: Pcm) -> None:
        sent.append((time.monotonic(), len(frame)))

    sender = PacedSender(send, 16000, frame_ms=20, lead_ms=60)
    sender.start()
    t0 = time.monotonic()
    await sender.push(tone(0.6))
    await asyncio.sleep(0.3)
    dropped = sender.clear()
    n_at_clear = len(sent)
    await asyncio.sleep(0.15)
    await sender.close()
    assert all(n == 320 for _, n in sent)
    # ~0.3 s of 20 ms frames plus the lead, not the whole 0.6 s at once
    assert 15 <= n_at_clear <= 22, n_at_clear
    assert len(sent) <= n_at_clear + 1  # nothing after clear
    assert dropped == pytest.approx(0.6 - n_at_clear * 0.02, abs=0.03)
    span = sent[n_at_clear - 1][0] - t0
    assert span == pytest.approx((n_at_clear - 3) * 0.02, abs=0.08)
    assert 0.2 <= sender.played_s() <= 0.4


async def test_back_pressure_holds_the_producer() -> None:
    async def send(frame: Pcm) -> None:
        return None

    sender = PacedSender(send, 8000, max_queued_s=0.2)
    sender.start()
    t0 = time.monotonic()
    for _ in range(5):
        await sender.push(tone(0.2, 8000))
    elapsed = time.monotonic() - t0
    await sender.close()
    assert elapsed >= 0.5  # could not queue a whole second at once


def test_recording_is_stereo_aligned_and_readable_before_close(tmp_path) -> None:
    path = tmp_path / "call.wav"
    rec = StereoRecorder(path)
    rec.caller(Pcm.silence(1.0, 16000))
    rec.bot(tone(0.5, 24000))  # bot audio at another rate is resampled
    rec.caller(tone(1.0, 16000))
    # flushed while the call is still going: a killed server leaves a valid file
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 16000
        assert w.getnframes() == 32000
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    caller, bot = frames[:, 0], frames[:, 1]
    assert np.abs(caller[:16000]).max() == 0 and np.abs(caller[16000:]).max() > 4000
    # the bot spoke at 1.0 s on the caller's clock, for 0.5 s
    assert np.abs(bot[:16000]).max() == 0
    assert np.abs(bot[16200:23800]).max() > 4000
    assert np.abs(bot[24500:]).max() == 0
    rec.bot(tone(0.5, 16000))
    rec.close()
    with wave.open(str(path)) as w:
        assert w.getnframes() == 32000 + 8000  # bot audio past the caller's end is kept
