"""English TTS: Piper (VITS on onnxruntime) with the "joe" US voice, 22.05 kHz, one chunk per sentence.

Piper phonemises the whole text with espeak-ng (fast), then runs one VITS inference per sentence;
each `next()` on its generator is one sentence, run in the caller's executor so the event loop never
waits on inference. The onnxruntime session is built here rather than by `PiperVoice.load` so its
intra-op threads can be capped (Piper's default takes every core, which starves ASR on 2 cores).
piper-tts is GPL-3.0: it stays a separately installed engine behind the Synthesizer seam.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from voice.audio import Pcm
from voice.models import piper_voice
from voice.textnorm import normalize

if TYPE_CHECKING:
    from settings import Settings

_DONE = object()


class PiperSynthesizer:
    """`voice.ports.Synthesizer` for English. Build once per process; safe to share between calls."""

    language = "en"

    def __init__(
        self,
        model_path: Path,
        config_path: Path,
        executor: Executor,
        *,
        threads: int = 1,
        length_scale: float | None = None,
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
        self._voice = PiperVoice(session=session, config=config)
        self._syn_config = SynthesisConfig(length_scale=length_scale)
        self._executor = executor
        self.sample_rate: int = config.sample_rate

    @classmethod
    def from_settings(cls, settings: Settings, executor: Executor, *, threads: int = 1) -> PiperSynthesizer:
        """The voice the settings choose (today: the packaged joe voice); raises `ModelMissing`."""
        del settings  # one English Piper voice ships today; a voice setting would be read here
        return cls.default_voice(executor, threads=threads)

    @classmethod
    def default_voice(cls, executor: Executor, *, threads: int = 1) -> PiperSynthesizer:
        """The packaged joe voice. Raises `voice.models.ModelMissing` when it is not installed."""
        paths = piper_voice()
        return cls(paths.onnx, paths.config, executor, threads=threads)

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        spoken = normalize(text, "en")
        if not any(ch.isalnum() for ch in spoken):
            return
        loop = asyncio.get_running_loop()
        sentences: Iterator[object] = await loop.run_in_executor(self._executor, self._start, spoken)
        while (chunk := await loop.run_in_executor(self._executor, next, sentences, _DONE)) is not _DONE:
            yield Pcm(chunk.audio_int16_array, chunk.sample_rate)  # type: ignore[attr-defined]

    def synthesize_blocking(self, text: str) -> Pcm:
        """The whole text at once, on the calling thread (prompt pre-rendering, tests, tools)."""
        chunks = [Pcm(c.audio_int16_array, c.sample_rate) for c in self._start(normalize(text, "en"))]
        return Pcm.concat(chunks, self.sample_rate)

    def _start(self, text: str) -> Iterator[object]:
        # Creating the generator phonemises nothing yet; the first next() does, in the executor.
        return iter(self._voice.synthesize(text, syn_config=self._syn_config))
