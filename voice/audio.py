"""PCM audio as it travels through a call: 16-bit mono samples with their sample rate beside them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class AudioFormatError(ValueError):
    """Audio that cannot be what it claims to be (odd byte count, unsupported rate)."""


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono 16-bit PCM. `samples` is an int16 array; never guess `sample_rate`."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise AudioFormatError("Pcm needs a 1-D int16 array")
        if self.sample_rate <= 0:
            raise AudioFormatError(f"bad sample rate {self.sample_rate}")

    @classmethod
    def from_bytes(cls, data: bytes, sample_rate: int) -> Pcm:
        if len(data) % 2:
            raise AudioFormatError(f"PCM16 needs an even number of bytes, got {len(data)}")
        return cls(np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False), sample_rate)

    @classmethod
    def from_float(cls, samples: np.ndarray, sample_rate: int) -> Pcm:
        clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        return cls((clipped * 32767.0).astype(np.int16), sample_rate)

    @classmethod
    def silence(cls, seconds: float, sample_rate: int) -> Pcm:
        return cls(np.zeros(round(seconds * sample_rate), dtype=np.int16), sample_rate)

    def to_bytes(self) -> bytes:
        return self.samples.astype("<i2", copy=False).tobytes()

    def to_float(self) -> np.ndarray:
        return self.samples.astype(np.float32) / 32768.0

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def __len__(self) -> int:
        return len(self.samples)

    def rms_dbfs(self) -> float:
        if not len(self.samples):
            return -120.0
        rms = float(np.sqrt(np.mean(self.to_float() ** 2)))
        return 20.0 * np.log10(max(rms, 1e-6))

    @staticmethod
    def concat(parts: list[Pcm], sample_rate: int) -> Pcm:
        for p in parts:
            if p.sample_rate != sample_rate:
                raise AudioFormatError(f"cannot join {p.sample_rate} Hz audio into {sample_rate} Hz")
        if not parts:
            return Pcm(np.zeros(0, dtype=np.int16), sample_rate)
        return Pcm(np.concatenate([p.samples for p in parts]), sample_rate)


SPEECH_DBFS = -40.0  # a 10 ms frame louder than this is voice, not a synthetic voice's trailing silence


def speech_end_s(audio: Pcm, floor_dbfs: float = SPEECH_DBFS) -> float:
    """Seconds into `audio` where its last 10 ms frame louder than `floor_dbfs` ends (0.0: all quiet).
    Bot audio is clean (synthesised), so a level is enough to tell the last word from the pause after it."""
    n = max(1, audio.sample_rate // 100)
    frames = len(audio) // n
    if frames == 0:
        return 0.0
    x = audio.samples[: frames * n].astype(np.float32).reshape(frames, n) / 32768.0
    rms = np.sqrt(np.mean(x**2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms) > floor_dbfs)[0]
    return 0.0 if not len(loud) else (int(loud[-1]) + 1) * n / audio.sample_rate
