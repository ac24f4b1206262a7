"""The stereo call recording (pacing: test_pacing.py)."""

from __future__ import annotations

import wave

import numpy as np

from voice.audio import Pcm
from voice.recording import StereoRecorder


def tone(seconds: float, rate: int = 16000, amp: int = 8000) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return Pcm((amp * np.sin(2 * np.pi * 440 * t)).astype(np.int16), rate)


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
