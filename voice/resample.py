"""Sample-rate conversion with soxr: streaming for live audio, one-shot for whole clips."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import soxr

from voice.audio import Pcm


class Resampler(Protocol):
    def process(self, audio: Pcm, *, last: bool = False) -> Pcm: ...


class StreamResampler:
    """Converts a live stream chunk by chunk, keeping filter state between chunks (no clicks at
    chunk edges). One per direction per call. Live audio uses soxr's medium quality: HQ holds back
    ~90 ms going 8 → 16 kHz, which is latency the caller waits for; MQ is transparent for speech."""

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "MQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        )

    def process(self, audio: Pcm, *, last: bool = False) -> Pcm:
        if audio.sample_rate != self.in_rate:
            raise ValueError(f"resampler expects {self.in_rate} Hz, got {audio.sample_rate} Hz")
        if self._stream is None:
            return audio
        out = self._stream.resample_chunk(audio.samples, last=last)
        return Pcm(np.ascontiguousarray(out, dtype=np.int16), self.out_rate)


def resample(audio: Pcm, out_rate: int) -> Pcm:
    if audio.sample_rate == out_rate:
        return audio
    out = soxr.resample(audio.samples, audio.sample_rate, out_rate, quality="HQ")
    return Pcm(np.ascontiguousarray(out, dtype=np.int16), out_rate)


class Upsample2x:
    """Exactly 2x up (8 → 16 kHz phone audio) with 1.5 ms of delay: a 48-tap Kaiser-windowed half-band
    FIR, state kept between chunks. soxr's streaming resampler holds back tens of ms, which every
    turn's endpoint decision would wait for; phone audio has nothing above 4 kHz to preserve."""

    TAPS = 48

    def __init__(self, in_rate: int = 8000) -> None:
        self.in_rate = in_rate
        self.out_rate = 2 * in_rate
        n = np.arange(self.TAPS) - (self.TAPS - 1) / 2
        h = np.sinc(n / 2) * np.kaiser(self.TAPS, 8.0)
        self._h = h * (2.0 / h.sum())
        self._state = np.zeros(self.TAPS - 1)

    def upsample(self, samples: np.ndarray) -> np.ndarray:
        up = np.zeros(2 * len(samples))
        up[::2] = samples
        buf = np.concatenate([self._state, up])
        self._state = buf[-(self.TAPS - 1):]
        out = np.convolve(buf, self._h, mode="valid")
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def process(self, audio: Pcm, *, last: bool = False) -> Pcm:
        if audio.sample_rate != self.in_rate:
            raise ValueError(f"resampler expects {self.in_rate} Hz, got {audio.sample_rate} Hz")
        return Pcm(self.upsample(audio.samples), self.out_rate)


def live_resampler(in_rate: int, out_rate: int) -> StreamResampler | Upsample2x:
    """The lowest-delay converter for live caller audio: the FIR for exactly 2x, soxr otherwise."""
    if out_rate == 2 * in_rate:
        return Upsample2x(in_rate)
    return StreamResampler(in_rate, out_rate)


class IntegerRatioResampler:
    """Live audio relayed to a listener in real time (a nurse and a caller during a takeover),
    between rates one of which is a whole multiple of the other (8, 16, 48 kHz): a windowed-sinc FIR
    with its state kept between chunks, so 20 ms in gives 20 ms out, at once. soxr's streaming
    resampler hands its output over in blocks of ~100 ms, which a paced output plays as gaps."""

    ZEROS = 8  # taps per side per output period: ~0.2 ms of delay at 48 kHz

    def __init__(self, in_rate: int, out_rate: int) -> None:
        hi, lo = max(in_rate, out_rate), min(in_rate, out_rate)
        if hi % lo:
            raise ValueError(f"{in_rate} → {out_rate} Hz is not a whole ratio")
        self.in_rate, self.out_rate = in_rate, out_rate
        self._up = out_rate // in_rate if out_rate > in_rate else 1
        self._down = in_rate // out_rate if in_rate > out_rate else 1
        ratio = hi // lo
        n = np.arange(2 * self.ZEROS * ratio + 1) - self.ZEROS * ratio
        h = np.sinc(0.9 * n / ratio) * np.kaiser(len(n), 8.0)  # cut at 90% of the lower Nyquist
        self._h = h * (self._up / h.sum())  # zeros inserted going up: the gain makes them up
        self._state = np.zeros(len(h) - 1)
        self._phase = 0  # going down: where the next kept sample falls in the next chunk

    def process(self, audio: Pcm, *, last: bool = False) -> Pcm:
        if audio.sample_rate != self.in_rate:
            raise ValueError(f"resampler expects {self.in_rate} Hz, got {audio.sample_rate} Hz")
        x = audio.samples.astype(np.float64)
        if self._up > 1:
            up = np.zeros(len(x) * self._up)
            up[:: self._up] = x
            x = up
        buf = np.concatenate([self._state, x])
        self._state = buf[len(buf) - len(self._state) :]
        y = np.convolve(buf, self._h, mode="valid")
        if self._down > 1:
            kept = y[self._phase :: self._down]
            self._phase = (self._phase - len(y)) % self._down
            y = kept
        return Pcm(np.clip(np.round(y), -32768, 32767).astype(np.int16), self.out_rate)


def relay_resampler(in_rate: int, out_rate: int) -> IntegerRatioResampler | StreamResampler:
    """The converter for live audio relayed between two people: steady chunks for whole ratios,
    soxr (blocky, but any ratio; none at all for equal rates) otherwise."""
    hi, lo = max(in_rate, out_rate), min(in_rate, out_rate)
    whole = hi != lo and hi % lo == 0
    return IntegerRatioResampler(in_rate, out_rate) if whole else StreamResampler(in_rate, out_rate)


class ToRate:
    """Audio of whatever rate it comes in, to one rate: one streaming converter per incoming rate,
    made on first use by `make` (e.g. `live_resampler`, `relay_resampler`), so a stream whose rate
    changes keeps each converter's state; audio already at the rate passes through."""

    def __init__(self, out_rate: int, make: Callable[[int, int], Resampler]) -> None:
        self.out_rate = out_rate
        self._make = make
        self._by_rate: dict[int, Resampler] = {}

    def __call__(self, audio: Pcm) -> Pcm:
        if audio.sample_rate == self.out_rate:
            return audio
        rs = self._by_rate.get(audio.sample_rate)
        if rs is None:
            rs = self._by_rate[audio.sample_rate] = self._make(audio.sample_rate, self.out_rate)
        return rs.process(audio)
