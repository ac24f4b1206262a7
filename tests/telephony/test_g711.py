"""G.711 tables against a scalar transcription of the ITU reference C code (g711.c), for every
one of the 65,536 16-bit inputs and all 256 codes. (Checked once by hand against `audioop` on
Python 3.11 too; the test does not depend on another library's bytes.)"""

from __future__ import annotations

import numpy as np
import pytest

from voice import g711
from voice.audio import Pcm

SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2ulaw(sample16: int) -> int:
    pcm = sample16 >> 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 32635) + (0x84 >> 2)
    seg = _search(pcm, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ref_linear2alaw(sample16: int) -> int:
    pcm = sample16 >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = _search(pcm, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0xF
    return aval ^ mask


def ref_ulaw2linear(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def ref_alaw2linear(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ALL = np.arange(-32768, 32768, dtype=np.int32)


def test_ulaw_encode_all_inputs_bit_exact() -> None:
    want = bytes(ref_linear2ulaw(int(s)) for s in ALL)
    assert g711.ulaw_encode(ALL.astype(np.int16)) == want


def test_alaw_encode_all_inputs_bit_exact() -> None:
    want = bytes(ref_linear2alaw(int(s)) for s in ALL)
    assert g711.alaw_encode(ALL.astype(np.int16)) == want


def test_decode_all_codes_bit_exact() -> None:
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes).tolist() == [ref_ulaw2linear(c) for c in range(256)]
    assert g711.alaw_decode(codes).tolist() == [ref_alaw2linear(c) for c in range(256)]


def test_known_values() -> None:
    # silence, the extremes and the well-known table ends
    assert g711.ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    assert g711.alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xd5\xaa\x2a"
    assert g711.ulaw_decode(b"\x00\x80\xff\x7f").tolist() == [-32124, 32124, 0, 0]
    assert g711.alaw_decode(b"\x00\xd5\x55").tolist() == [-5504, 8, -8]


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_round_trip_error_is_within_the_quantiser_step(name: str) -> None:
    codec = g711.G711(name)
    t = np.arange(8000) / 8000
    pcm = Pcm((np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16), 8000)
    back = codec.decode(codec.encode(pcm))
    err = np.abs(back.samples.astype(np.int32) - pcm.samples)
    # segment step at |x| ~ 12000 is 512 (μ-law) / 512 (A-law): half a step is the worst case
    assert err.max() <= 512
    snr = 10 * np.log10(np.mean(pcm.samples.astype(float) ** 2) / np.mean(err.astype(float) ** 2))
    assert snr > 30


def test_codec_rejects_wrong_rate_and_name() -> None:
    with pytest.raises(ValueError):
        g711.G711("G722")
    with pytest.raises(ValueError):
        g711.G711("PCMU").encode(Pcm.silence(0.02, 16000))
    assert g711.G711("PCMU").payload_type == 0 and g711.G711("pcma").payload_type == 8
