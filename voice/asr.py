"""Speech to text with faster-whisper (Whisper base, CTranslate2), behind `voice.ports.Recognizer`.

What the measurements on this hardware taught (shared/FIELD-NOTES.md):
- always force the language: auto-detection doubles latency and misfires on short answers;
- `condition_on_previous_text=False`: each utterance is decoded alone, so one bad decode never
  poisons the next;
- Mandarin needs biasing: the prompt "以下是普通话的句子。" (else it may answer in traditional
  characters) plus triage terms, and a pinyin term fixer afterwards (CER 24% → 6%). Biasing makes
  Whisper invent symptoms on silence, so `vad_filter=True` whenever it is on;
- beam 5 for finals (beam 1 was worse and once ran away for 17 s); beam 1 for partials, which only
  need to be quick while the caller is still speaking.
The term lexicon is data (prompts/zh/asr_terms.yaml) that clinicians may edit.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr
import yaml
from pypinyin import Style, lazy_pinyin, pinyin

from voice.audio import Pcm
from voice.models import whisper_dir
from voice.ports import Transcript

if TYPE_CHECKING:
    from settings import Settings

WHISPER_RATE = 16_000
SHORT_WINDOW_S = 10  # encoder window for short utterances (see WhisperRecognizer._decode_short)
SHORT_WINDOW_MAX_S = 9.5
DEFAULT_ZH_TERMS = Path(__file__).resolve().parents[1] / "prompts" / "zh" / "asr_terms.yaml"


# --- the pinyin term fixer ---------------------------------------------------------------------


def _is_hanzi(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


@functools.lru_cache(maxsize=8192)
def _readings(ch: str) -> frozenset[str]:
    """Every toneless reading of one character: 薄 is bao/bo/bu, so 割薄 can still match 胳膊 (ge bo)."""
    return frozenset(pinyin(ch, style=Style.NORMAL, heteronym=True, errors="ignore")[0] or ())


@dataclass(frozen=True, slots=True)
class TermFixer:
    """Replaces misheard runs whose toneless pinyin equals a triage term (割薄 → 胳膊).

    Only runs of hanzi of the term's length are compared, longest terms first; a run already equal to
    a term, or overlapping a `never_rewrite` word, is locked, so ordinary words are left alone.
    """

    terms: tuple[tuple[str, tuple[str, ...]], ...]
    never_rewrite: tuple[str, ...] = ()

    @classmethod
    def build(cls, terms: Iterable[str], never_rewrite: Iterable[str] = ()) -> TermFixer:
        entries = []
        for term in dict.fromkeys(t.strip() for t in terms):
            if len(term) < 2 or not all(_is_hanzi(c) for c in term):
                # Single syllables turn ordinary words into symptoms.
                raise ValueError(f"fix term {term!r} must be 2+ hanzi")
            entries.append((term, tuple(lazy_pinyin(term, style=Style.NORMAL))))
        entries.sort(key=lambda e: -len(e[0]))
        return cls(tuple(entries), tuple(w.strip() for w in never_rewrite if w.strip()))

    def fix(self, text: str) -> str:
        chars = list(text)
        locked = [not _is_hanzi(c) for c in chars]
        for word in self.never_rewrite:
            start = text.find(word)
            while start >= 0:
                locked[start : start + len(word)] = [True] * len(word)
                start = text.find(word, start + 1)
        for term, syllables in self.terms:
            n = len(term)
            for i in range(len(chars) - n + 1):
                window = "".join(chars[i : i + n])
                if window == term:
                    locked[i : i + n] = [True] * n  # already right: protect it from shorter terms
                    continue
                if any(locked[i : i + n]):
                    continue
                if all(s in _readings(c) for s, c in zip(syllables, window, strict=True)):
                    chars[i : i + n] = list(term)
                    locked[i : i + n] = [True] * n
        return "".join(chars)


@dataclass(frozen=True, slots=True)
class LanguageBias:
    """How to steer Whisper for one language: prompt and post-fixing (empty = none)."""

    prompt: str = ""
    fixer: TermFixer | None = None

    @property
    def active(self) -> bool:
        return bool(self.prompt) or self.fixer is not None


def load_zh_bias(path: Path = DEFAULT_ZH_TERMS) -> LanguageBias:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    prompt = str(data.get("prompt", "以下是普通话的句子。"))
    terms = [str(t) for t in data.get("prompt_terms") or []]
    if terms:
        prompt += "、".join(terms) + "。"
    fixer = TermFixer.build(data.get("fix_terms") or [], data.get("never_rewrite") or [])
    return LanguageBias(prompt, fixer if fixer.terms else None)


# --- traditional → simplified ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    import opencc  # imported lazily: only Mandarin needs it

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Whisper sometimes answers in traditional characters even when prompted; the records are simplified."""
    return _t2s().convert(text) if text else text


# --- the recogniser ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    beam_size: int = 5
    partial_beam_size: int = 1
    # Per-language final beam (overrides beam_size): beam 5 fixes many Mandarin errors, while
    # English is nearly as accurate at beam 1 for a fraction of the time on a CPU.
    beam_by_language: tuple[tuple[str, int], ...] = ()
    # Finals in these languages use the short encoder window (partials always do).
    short_window_languages: tuple[str, ...] = ("en",)

    def final_beam(self, language: str) -> int:
        return dict(self.beam_by_language).get(language, self.beam_size)
    # Fallback temperatures cost a full re-decode each; two steps catch a runaway without tripling latency.
    temperatures: tuple[float, ...] = (0.0, 0.4)
    max_tokens_per_s: float = 15.0  # caps a runaway decode (Mandarin runs ~4-8 tokens per second of speech)


@dataclass(slots=True)
class _Stats:
    decodes: int = 0
    audio_s: float = 0.0
    processing_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


class WhisperRecognizer:
    """`voice.ports.Recognizer` on faster-whisper. Load once per process, share between calls: the
    CTranslate2 model is thread-safe and the given executor bounds how many decodes run at once."""

    def __init__(
        self,
        model_dir: Path,
        executor: Executor,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        options: DecodeOptions = DecodeOptions(),
        biases: dict[str, LanguageBias] | None = None,
    ) -> None:
        from faster_whisper import WhisperModel  # heavy import, kept out of module import time

        self._model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1
        )
        self._executor = executor
        self._options = options
        self._biases = biases if biases is not None else {"zh": load_zh_bias()}
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
            ),
        )

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False) -> Transcript:
        samples = _to_whisper_input(audio)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        text = await loop.run_in_executor(self._executor, self._decode, samples, language, partial)
        took = time.monotonic() - started
        self.stats.decodes += 1
        self.stats.audio_s += audio.duration
        self.stats.processing_s += took
        kind = "partial" if partial else "final"
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        return Transcript(text=text, language=language, audio_s=audio.duration, processing_s=took)

    def _decode(self, samples: np.ndarray, language: str, partial: bool) -> str:
        if samples.size < WHISPER_RATE // 10:
            return ""  # under 0.1 s: nothing a person could have said
        bias = self._biases.get(language, LanguageBias())
        opts = self._options
        short_ok = samples.size <= SHORT_WINDOW_MAX_S * WHISPER_RATE
        if short_ok and (partial or language in opts.short_window_languages):
            text = self._decode_short(samples, language, partial, bias)
        else:
            text = self._decode_full(samples, language, partial, bias)
        if language == "zh":
            text = _fullwidth_punctuation(to_simplified(text))
            if bias.fixer is not None:
                text = bias.fixer.fix(text)
        return text

    def _decode_short(self, samples: np.ndarray, language: str, partial: bool, bias: LanguageBias) -> str:
        """Encode a 10 s window instead of Whisper's fixed 30 s. The encoder is most of the cost on a
        CPU and scales with the window (measured here: 1.27 s for 30 s, 0.21 s for 10 s), so a short
        utterance decodes 3-4x faster. English transcripts matched the 30 s decode on our test
        sentences; Mandarin repeated or misheard short answers, so its finals keep the full window."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        features = self._model.feature_extractor(samples)
        frames = SHORT_WINDOW_S * WHISPER_RATE // self._model.feature_extractor.hop_length
        window = np.zeros((features.shape[0], frames), dtype=np.float32)
        n = min(frames, features.shape[-1])
        window[:, :n] = features[:, :n]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(window[None]), to_cpu=False)
        tokenizer = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=language)
        previous = tokenizer.encode(" " + bias.prompt.strip()) if bias.prompt else []
        prompt = self._model.get_prompt(tokenizer, previous, without_timestamps=True)
        opts = self._options
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=opts.partial_beam_size if partial else opts.final_beam(language),
            max_length=len(prompt) + self._max_new_tokens(samples),
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return tokenizer.decode(result[0].sequences_ids[0]).strip()

    def _max_new_tokens(self, samples: np.ndarray) -> int:
        # Whisper's window holds 448 tokens, prompt included: stay well inside it.
        return min(224, int(16 + self._options.max_tokens_per_s * samples.size / WHISPER_RATE))

    def _decode_full(self, samples: np.ndarray, language: str, partial: bool, bias: LanguageBias) -> str:
        opts = self._options
        segments, _info = self._model.transcribe(
            samples,
            language=language,
            task="transcribe",
            beam_size=opts.partial_beam_size if partial else opts.final_beam(language),
            temperature=list(opts.temperatures[:1] if partial else opts.temperatures),
            condition_on_previous_text=False,
            initial_prompt=bias.prompt or None,
            vad_filter=bias.active,
            without_timestamps=True,
            max_new_tokens=self._max_new_tokens(samples),
        )
        return "".join(seg.text for seg in segments).strip()


_FULLWIDTH = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "："})


def _fullwidth_punctuation(text: str) -> str:
    """Whisper writes ASCII commas between hanzi; the records and the console show Chinese punctuation.
    Only punctuation touching a hanzi changes, so "38.5" or "B超, CT" keep theirs where they should."""
    chars = list(text)
    for i, ch in enumerate(chars):
        if ch in ",?!;:" and (
            (i > 0 and _is_hanzi(chars[i - 1])) or (i + 1 < len(chars) and _is_hanzi(chars[i + 1]))
        ):
            chars[i] = ch.translate(_FULLWIDTH)
    return "".join(chars).replace("， ", "，")


def _to_whisper_input(audio: Pcm) -> np.ndarray:
    samples = audio.to_float()
    if audio.sample_rate != WHISPER_RATE:
        samples = soxr.resample(samples, audio.sample_rate, WHISPER_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)
