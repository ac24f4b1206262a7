"""G.711 μ-law and A-law (ITU-T G.711) with numpy lookup tables.

Encoding follows the reference C code of the ITU / Sun `g711.c` (the semantics `audioop` had):
μ-law encodes the top 14 bits of a 16-bit sample, A-law the top 13. Every table is built once at
import from the segment formula, so `encode` and `decode` are one fancy-index each.
"""

from __future__ import annotations

import numpy as np

from voice.audio import Pcm

SAMPLE_RATE = 8000

_ULAW_BIAS = 0x84
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered by its unsigned bit pattern (so index = sample.view(uint16))."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 32635) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")  # first segment whose end >= mag
    safe = np.minimum(seg, 7)
    code = (safe << 4) | ((mag >> (safe + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    safe = np.minimum(seg, 7)
    quant = np.where(safe < 2, mag >> 1, mag >> safe) & 0xF
    code = np.where(seg >= 8, 0x7F, (safe << 4) | quant)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0xF) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()  # uint8[65536], indexed by int16 sample viewed as uint16
ALAW_ENCODE = _build_alaw_encode()
ULAW_DECODE = _build_ulaw_decode()  # int16[256]
ALAW_DECODE = _build_alaw_decode()
for _table in (ULAW_ENCODE, ALAW_ENCODE, ULAW_DECODE, ALAW_DECODE):
    _table.setflags(write=False)

ULAW_SILENCE = 0xFF  # encode(0)
ALAW_SILENCE = 0xD5


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples (any rate; G.711 is 8 kHz on the wire) → μ-law bytes."""
    return ULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def alaw_encode(samples: np.ndarray) -> bytes:
    return ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


class G711:
    """One codec by its RTP name: PCMU (payload type 0) or PCMA (8)."""

    def __init__(self, name: str) -> None:
        name = name.upper()
        if name not in ("PCMU", "PCMA"):
            raise ValueError(f"G.711 codec must be PCMU or PCMA, not {name!r}")
        self.name = name
        self.payload_type = 0 if name == "PCMU" else 8
        self.silence_byte = ULAW_SILENCE if name == "PCMU" else ALAW_SILENCE
        self._enc = ULAW_ENCODE if name == "PCMU" else ALAW_ENCODE
        self._dec = ULAW_DECODE if name == "PCMU" else ALAW_DECODE

    def encode(self, audio: Pcm) -> bytes:
        if audio.sample_rate != SAMPLE_RATE:
            raise ValueError(f"G.711 encodes 8000 Hz audio, got {audio.sample_rate} Hz")
        return self._enc[audio.samples.view(np.uint16)].tobytes()

    def decode(self, data: bytes) -> Pcm:
        return Pcm(self._dec[np.frombuffer(data, dtype=np.uint8)], SAMPLE_RATE)
