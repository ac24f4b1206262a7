"""Fake-microphone WAVs for the browser tests: silences and sentences spoken by the project's own
voices, written as 48 kHz mono PCM16, the format Chromium's fake capture device reads."""

from __future__ import annotations

import asyncio
import hashlib
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from voice.audio import Pcm
from voice.resample import resample

RATE = 48_000


def _speak(text: str, lang: str) -> Pcm:
    from settings import Settings
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    with ThreadPoolExecutor(max_workers=1) as executor:
        if lang == "zh":  # espeak reads hanzi badly: the project's own Mandarin voice
            voice = MandarinSynthesizer.from_settings(Settings(), executor)
        else:
            voice = PiperSynthesizer.default_voice(executor)

        async def collect() -> Pcm:
            return Pcm.concat([p async for p in voice.synthesize(text)], voice.sample_rate)

        # in a thread of its own: the caller may be inside Playwright's running event loop
        with ThreadPoolExecutor(max_workers=1) as runner:
            return runner.submit(asyncio.run, collect()).result()


def mic_wav(directory: Path, *parts: float | str, lang: str = "en") -> Path:
    """A WAV of `parts` in order: a number is that many seconds of silence, a string is spoken
    (English by Piper, Mandarin by the project's FastSpeech2 voice)."""
    key = hashlib.sha1(repr((lang, parts)).encode()).hexdigest()[:12]
    path = directory / f"mic-{key}.wav"
    if path.exists():
        return path
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(resample(_speak(part, lang), RATE).samples)
        else:
            pieces.append(np.zeros(round(part * RATE), dtype=np.int16))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(pieces).astype("<i2").tobytes())
    return path
