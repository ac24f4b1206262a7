"""Speech to text with faster-whisper (Whisper base, CTranslate2), behind `voice.ports.Recognizer`.

What the measurements on this hardware taught (shared/FIELD-NOTES.md, bench/asr.py):
- always force the language: auto-detection doubles latency and misfires on short answers;
- each utterance is decoded alone (no previous text), so one bad decode never poisons the next;
- the encoder window fits the utterance plus real silence (voice.asr_decode): finals no longer lose
  their last words, and Mandarin finals take the short window too (they used the fixed 30 s one);
- Mandarin needs biasing (prompt + triage terms + the turn's expected answers, voice.asr_terms) and
  the pinyin term fixer afterwards; biased decodes are VAD-gated and loop-guarded;
- beam per language and kind: finals beam 5 for Mandarin, 1 for English; partials beam 1;
- concurrent calls' decodes are batched (voice.asr_batch).
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

from voice.asr_batch import DecodeBatcher
from voice.asr_decode import DecodeRequest, DecodeResult, WindowDecoder, WindowPolicy
from voice.asr_terms import (
    LanguageBias,
    TermFixer,
    TurnBias,
    fullwidth_punctuation,
    load_bias,
    load_zh_bias,
    to_simplified,
)
from voice.asr_words import uncertain_words
from voice.audio import Pcm
from voice.languages import languages
from voice.models import whisper_dir
from voice.ports import RecognitionHints, Transcript

if TYPE_CHECKING:
    from settings import Settings

__all__ = ["DecodeOptions", "LanguageBias", "TermFixer", "TurnBias", "WhisperRecognizer", "load_zh_bias",
           "to_simplified", "uncertain_words"]

WHISPER_RATE = 16_000
_fullwidth_punctuation = fullwidth_punctuation  # the earlier private name


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    beam_size: int = 5
    partial_beam_size: int = 1
    # Per-language final beam (overrides beam_size): beam 5 fixes many Mandarin errors, while
    # English is nearly as accurate at beam 1 for a fraction of the time on a CPU.
    beam_by_language: tuple[tuple[str, int], ...] = ()
    window: WindowPolicy = field(default_factory=WindowPolicy)
    max_batch: int = 4  # utterances of concurrent calls in one encoder pass

    def final_beam(self, language: str) -> int:
        return dict(self.beam_by_language).get(language, self.beam_size)


@dataclass(slots=True)
class _Stats:
    decodes: int = 0
    audio_s: float = 0.0
    processing_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)


class WhisperRecognizer:
    """`voice.ports.Recognizer` on faster-whisper. Load once per process, share between calls: the
    CTranslate2 model is thread-safe; decodes of concurrent calls are batched onto the executor."""

    def __init__(
        self,
        model_dir: Path,
        executor: Executor,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        options: DecodeOptions = DecodeOptions(),
        biases: dict[str, TurnBias] | None = None,
    ) -> None:
        from faster_whisper import WhisperModel  # heavy import, kept out of module import time

        self._model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1
        )
        self._options = options
        self._decoder = WindowDecoder(self._model, options.window)
        self._biases = biases if biases is not None else {code: load_bias(code) for code in languages}
        self._batcher: DecodeBatcher[DecodeRequest, DecodeResult] = DecodeBatcher(
            self._decoder.decode, executor, max_batch=options.max_batch)
        self.stats = _Stats()

    @classmethod
    def from_settings(cls, settings: Settings, executor: Executor) -> WhisperRecognizer:
        """Raises `voice.models.ModelMissing` (naming `make models`) when Whisper is not assembled."""
        return cls(
            whisper_dir(settings.models_dir),
            executor,
            device=settings.asr_device,
            compute_type=settings.asr_compute_type,
            cpu_threads=settings.asr_threads,
            options=DecodeOptions(
                beam_size=settings.asr_beam_size,
                beam_by_language=(("en", settings.asr_beam_size_en), ("zh", settings.asr_beam_size_zh)),
                max_batch=settings.asr_max_batch,
            ),
        )

    @property
    def batches(self) -> list[int]:
        return self._batcher.batches

    def request(self, audio: Pcm, language: str, *, partial: bool = False,
                hints: RecognitionHints | None = None) -> DecodeRequest:
        bias = self._biases.get(language, TurnBias(language))
        opts = self._options
        prompt = bias.prompt_for(hints, audio_s=audio.duration)
        return DecodeRequest(
            samples=_to_whisper_input(audio),
            language=languages[language].asr_code,
            prompt=prompt,
            beam_size=opts.partial_beam_size if partial else opts.final_beam(language),
            words=not partial,
            fallback_prompt=bias.fallback_prompt,
            gate_with_vad=bool(prompt),  # a biased decode must not invent words on noise
        )

    async def transcribe(
        self, audio: Pcm, language: str, *, partial: bool = False, hints: RecognitionHints | None = None
    ) -> Transcript:
        req = self.request(audio, language, partial=partial, hints=hints)
        started = time.monotonic()
        res = await self._batcher.submit(req, priority=1 if partial else 0)
        took = time.monotonic() - started
        text = self._finish_text(res.text, language)
        stats = self.stats
        stats.decodes += 1
        stats.audio_s += audio.duration
        stats.processing_s += took
        kind = "partial" if partial else "final"
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        if res.retried:
            stats.retried[res.retried] = stats.retried.get(res.retried, 0) + 1
        words = res.words if text else ()
        return Transcript(text=text, language=language, audio_s=audio.duration, processing_s=took, words=words)

    def transcribe_blocking(self, audio: Pcm, language: str, *, partial: bool = False,
                            hints: RecognitionHints | None = None) -> tuple[Transcript, DecodeResult]:
        """One decode on the calling thread (benches): the transcript and the raw decode result."""
        started = time.monotonic()
        res = self._decoder.decode([self.request(audio, language, partial=partial, hints=hints)])[0]
        text = self._finish_text(res.text, language)
        took = time.monotonic() - started
        return Transcript(text, language, audio.duration, took, res.words if text else ()), res

    def warm_up(self) -> None:
        """At start-up, on the calling thread: one decode per language, plain and VAD-gated, and one
        transcript finished. The first decode pays for Silero VAD's load, the Mandarin converters and
        CTranslate2's first-run allocations (1.1-1.2 s more than the next one here, per language), which
        otherwise fell on the first caller's first answer."""
        rng = np.random.default_rng(0)
        noise = Pcm(rng.normal(0, 300, 2 * WHISPER_RATE).astype(np.int16), WHISPER_RATE)
        for language in languages:
            for partial in (False, True):
                req = self.request(noise, language, partial=partial, hints=RecognitionHints("yes_no", ()))
                self._decoder.decode([req, replace(req, gate_with_vad=False)])
            self._finish_text("测试 test", language)

    def _finish_text(self, text: str, language: str) -> str:
        if text:
            text = languages[language].finish_transcript(text)  # Mandarin: simplified, Chinese punctuation
            bias = self._biases.get(language)
            if bias is not None and bias.fixer is not None:
                text = bias.fixer.fix(text)
        return text.strip()

    def decode_batch_blocking(self, audios: list[Pcm], language: str) -> list[str]:
        """Several utterances in one encoder pass on the calling thread (benches)."""
        reqs = [self.request(a, language) for a in audios]
        return [self._finish_text(r.text, language) for r in self._decoder.decode(reqs)]


def _to_whisper_input(audio: Pcm) -> np.ndarray:
    samples = audio.to_float()
    if audio.sample_rate != WHISPER_RATE:
        samples = soxr.resample(samples, audio.sample_rate, WHISPER_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)
