"""ToRate: one streaming converter per incoming rate, kept; audio already at the rate passes through."""

from __future__ import annotations

import numpy as np

from voice.audio import Pcm
from voice.resample import StreamResampler, ToRate, relay_resampler


def _tone(rate: int, seconds: float = 0.02) -> Pcm:
    t = np.arange(int(rate * seconds)) / rate
    return Pcm((np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16), rate)


def test_each_rate_gets_one_converter_kept_across_chunks() -> None:
    made: list[tuple[int, int]] = []

    def make(in_rate: int, out_rate: int) -> StreamResampler:
        made.append((in_rate, out_rate))
        return StreamResampler(in_rate, out_rate)

    to16 = ToRate(16000, make)
    same = _tone(16000)
    assert to16(same) is same  # nothing to do
    for _ in range(5):
        assert to16(_tone(8000)).sample_rate == 16000
        assert to16(_tone(48000)).sample_rate == 16000
    assert made == [(8000, 16000), (48000, 16000)]


def test_a_relayed_whole_ratio_gives_20_ms_out_for_20_ms_in() -> None:
    to48 = ToRate(48000, relay_resampler)
    assert [len(to48(_tone(8000)).samples) for _ in range(5)] == [960] * 5  # steady, never a block
