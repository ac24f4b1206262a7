"""Recording of both sides of a call into one stereo WAV (left: caller, right: bot), aligned on
the caller's audio clock and flushed as the call goes, so a server killed mid-call leaves a
playable file up to the last flush."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from voice.audio import Pcm
from voice.resample import StreamResampler

RATE = 16_000
FLUSH_SAMPLES = RATE  # write to disk every second of caller audio


class StereoRecorder:
    """`max_s` caps the file at the call's maximum length (its size is tied to the call's length,
    whatever a client sends; the transports already admit caller audio at real time only)."""

    def __init__(self, path: Path, *, max_s: float | None = None) -> None:
        self.path = path
        self._max_samples = None if max_s is None else int(max_s * RATE)
        self.dropped_s = 0.0
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600: a recording is health data (the mode is set at creation, never world-readable)
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        self._file.write(self._header(0))
        self._caller: list[np.ndarray] = []
        self._caller_len = 0  # samples of caller audio buffered, not yet written
        self._written = 0  # frames written
        self._bot = np.zeros(0, dtype=np.int16)  # bot samples from `written` on
        self._bot_resamplers: dict[int, StreamResampler] = {}
        self.closed = False

    @staticmethod
    def _header(frames: int) -> bytes:
        data = frames * 4
        return (
            b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 2, RATE, RATE * 4, 4, 16)
            + b"data" + struct.pack("<I", data)
        )

    @property
    def position_s(self) -> float:
        """Where the recording is now on the call's audio clock."""
        return (self._written + self._caller_len) / RATE

    def caller(self, audio: Pcm) -> None:
        if self.closed:
            return
        if audio.sample_rate != RATE:
            raise ValueError("the recorder takes 16 kHz caller audio")
        if self._max_samples is not None and self._written + self._caller_len + len(audio) > self._max_samples:
            self.dropped_s += audio.duration
            return
        self._caller.append(audio.samples)
        self._caller_len += len(audio.samples)
        if self._caller_len >= FLUSH_SAMPLES:
            self.flush()

    def bot(self, audio: Pcm) -> None:
        """Bot audio as it is sent: placed at the current caller position."""
        if self.closed:
            return
        if audio.sample_rate != RATE:
            rs = self._bot_resamplers.setdefault(audio.sample_rate, StreamResampler(audio.sample_rate, RATE))
            audio = rs.process(audio)
        offset = self._caller_len
        end = offset + len(audio.samples)
        if len(self._bot) < end:
            self._bot = np.concatenate([self._bot, np.zeros(end - len(self._bot), dtype=np.int16)])
        seg = self._bot[offset:end].astype(np.int32) + audio.samples
        self._bot[offset:end] = np.clip(seg, -32768, 32767).astype(np.int16)

    def flush(self) -> None:
        if self.closed or not self._caller_len:
            return
        left = np.concatenate(self._caller)
        n = len(left)
        right = np.zeros(n, dtype=np.int16)
        k = min(n, len(self._bot))
        right[:k] = self._bot[:k]
        self._bot = self._bot[k:]
        frames = np.empty(2 * n, dtype="<i2")
        frames[0::2] = left
        frames[1::2] = right
        self._file.write(frames.tobytes())
        self._written += n
        self._caller, self._caller_len = [], 0
        self._file.seek(0)
        self._file.write(self._header(self._written))
        self._file.seek(0, 2)
        self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        # bot audio past the caller's last frame (caller hung up while the bot spoke)
        if len(self._bot) > self._caller_len:
            pad = len(self._bot) - self._caller_len
            self._caller.append(np.zeros(pad, dtype=np.int16))
            self._caller_len += pad
        self.flush()
        self._file.close()
        self.closed = True
