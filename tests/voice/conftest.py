"""Fixtures for the voice engine tests: one executor and one instance of each real model per session
(loading Whisper or a TTS voice costs a second or more; the engines are shared per process in
production too)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from settings import Settings

    return Settings().models_dir


@pytest.fixture(scope="session")
def voice_executor() -> Iterator[ThreadPoolExecutor]:
    # Two workers, as in production on 2 cores: enough to overlap ASR and TTS, never more.
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voice-test")
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def whisper(models_dir: Path, voice_executor: ThreadPoolExecutor):  # type: ignore[no-untyped-def]
    from voice.asr import WhisperRecognizer
    from voice.models import whisper_dir

    return WhisperRecognizer(whisper_dir(models_dir), voice_executor, cpu_threads=2)


@pytest.fixture(scope="session")
def piper_tts(voice_executor: ThreadPoolExecutor):  # type: ignore[no-untyped-def]
    from voice.tts.piper import PiperSynthesizer

    return PiperSynthesizer.default_voice(voice_executor)


@pytest.fixture(scope="session")
def zh_tts(models_dir: Path, voice_executor: ThreadPoolExecutor):  # type: ignore[no-untyped-def]
    from voice.tts.mandarin import MandarinSynthesizer

    return MandarinSynthesizer.from_models_dir(models_dir, voice_executor)
