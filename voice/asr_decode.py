"""One Whisper pass over one or several utterances: encode in a window fitted to the audio, decode,
word probabilities, and the guards that keep a final honest.

Why its own decode instead of `WhisperModel.transcribe`:
- **The window fits the utterance.** The encoder is most of the cost on a CPU and scales with its
  window (measured here: 1.27 s for Whisper's fixed 30 s, 0.21 s for 10 s). The window is the audio
  plus a margin of *real* silence (the audio is padded before the log-mel, so the padding looks like
  silence to the model, not like zeroed features): speech that runs up to the window's edge is where
  Whisper drops last words ("men" for "mend the coat before you go out"), so there is always room.
- **Several calls' utterances share one encoder pass** (a batch `[N, 80, frames]`): calls at once
  share the two cores instead of queueing and oversubscribing them.
- **Coverage check**: the words' timestamps (cross-attention alignment, the same one faster-whisper
  uses) must reach the end of the speech; a final that stops early is decoded again with the 30 s
  window, so a final never silently loses its end.
- **Repetition guard**: biasing can push Whisper into a loop ("胳膊胳膊胳膊…"). A repeated unit or a
  decode that ran into its token cap is decoded again without the term bias and with repeated
  n-grams forbidden; if it still loops, the repetition is collapsed to one occurrence.
- **Silence guard**: a biased decode is gated by Silero VAD (no speech → no words), and Whisper's own
  no-speech probability drops a low-confidence decode, so a prompt never invents symptoms on noise.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from voice.ports import WordInfo

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

RATE = 16_000


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    margin_s: float = 1.5  # real silence after the speech, inside the window
    min_window_s: int = 6  # 4 s made short answers repeat ("是是", "38度38度")
    max_window_s: int = 30
    coverage_gap_s: float = 1.2  # last word ends this long before the audio end: decode again, full window
    max_tokens_per_s: float = 15.0  # caps a runaway (Mandarin runs ~4-8 tokens per second of speech)
    repetition_retry: bool = True
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0

    def window_for(self, n_samples: int) -> int:
        need = n_samples / RATE + self.margin_s
        return int(min(self.max_window_s, max(self.min_window_s, math.ceil(need))))


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    samples: np.ndarray  # float32, 16 kHz mono
    language: str
    prompt: str  # text before the utterance (bias + per-turn hints); "" for none
    beam_size: int
    words: bool = True  # align words (needed for probabilities and the coverage check)
    fallback_prompt: str = ""  # the prompt used when the biased decode repeats itself
    gate_with_vad: bool = False  # biased decodes: no speech per Silero → empty


@dataclass(frozen=True, slots=True)
class DecodeResult:
    text: str
    words: tuple[WordInfo, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    window_s: int = 0
    retried: str = ""  # "" | "repetition" | "coverage" | "repetition+coverage"
    capped: bool = False  # ran into the token cap


# A unit repeated 3+ times (2-12 chars) or 5+ times (one char); or a clause of 6+ chars said twice
# in a row (Whisper continuing into the silence after the speech by repeating it).
_REPEAT = re.compile(r"(.{2,12}?)\1{2,}|(.)\2{4,}|(?<![^\W_])(\w[^。！？.!?]{5,}?[。！？.!?，,]?)\s*\3(?![^\W_])", re.S)


def repeated_span(text: str) -> tuple[int, int, str] | None:
    """The first repetition with the shape of a Whisper loop, as (start, end, unit). "对对对" and
    "谢谢谢谢" are speech and pass; "胳膊胳膊胳膊" and "一二线城市。一二线城市。" do not."""
    for m in _REPEAT.finditer(text):
        unit = m.group(1) or m.group(2) or m.group(3)
        if unit.strip() and any(c.isalnum() for c in unit):
            return m.start(), m.end(), unit
    return None


def collapse_repetition(text: str) -> str:
    while (span := repeated_span(text)) is not None:
        start, end, unit = span
        text = text[:start] + unit + text[end:]
    return text


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


class WindowDecoder:
    """Stateless over a loaded `faster_whisper.WhisperModel`; thread-safe as CTranslate2 is."""

    def __init__(self, model: WhisperModel, policy: WindowPolicy = WindowPolicy()) -> None:
        self._model = model
        self.policy = policy
        self._tokenizers: dict[str, Any] = {}
        self._vad_model: Any = None

    # --- public -----------------------------------------------------------------------------
    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode every request; requests with the same language and beam share one encoder pass."""
        results: list[DecodeResult | None] = [None] * len(requests)
        todo: dict[tuple[str, int, bool], list[int]] = {}
        for i, req in enumerate(requests):
            if req.samples.size < RATE // 10:
                results[i] = DecodeResult("")  # under 0.1 s: nothing a person could have said
            elif req.gate_with_vad and not self._has_speech(req.samples):
                results[i] = DecodeResult("")
            else:
                todo.setdefault((req.language, req.beam_size, req.words), []).append(i)
        for indices in todo.values():
            group = [requests[i] for i in indices]
            for i, res in zip(indices, self._decode_group(group), strict=True):
                results[i] = res
        return [r if r is not None else DecodeResult("") for r in results]

    # --- one group: same language, beam, word alignment -------------------------------------------
    def _decode_group(self, reqs: list[DecodeRequest], window_s: int | None = None) -> list[DecodeResult]:
        pol = self.policy
        window = window_s or max(pol.window_for(r.samples.size) for r in reqs)
        encoded, frames = self._encode([r.samples for r in reqs], window)
        tok = self._tokenizer(reqs[0].language)
        prompts = [self._prompt(tok, r.prompt) for r in reqs]
        out = self._generate(encoded, prompts, reqs, tok, window)
        results: list[DecodeResult] = []
        for i, (req, res) in enumerate(zip(reqs, out, strict=True)):
            if pol.repetition_retry and (res.capped or repeated_span(res.text) is not None):
                res = self._retry_repetition(req, window)
            if req.words and res.text:
                res = replace(res, words=self._words(tok, res, encoded, i, frames[i]))
            results.append(res)
        # Coverage: a final whose words stop well before the speech does is decoded with the full window.
        for i, (req, res) in enumerate(zip(reqs, results, strict=True)):
            if req.words and window < pol.max_window_s and self._truncated(req, res):
                again = self._decode_group([req], pol.max_window_s)[0]
                if len(again.text) > len(res.text):
                    retried = "+".join(x for x in (res.retried, "coverage") if x)
                    results[i] = replace(again, retried=retried)
        return [self._silence_guard(r) for r in results]

    def _encode(self, audio: list[np.ndarray], window_s: int) -> tuple[Any, list[int]]:
        import ctranslate2

        fe = self._model.feature_extractor
        n_frames = window_s * RATE // fe.hop_length
        batch = np.empty((len(audio), fe.n_mels if hasattr(fe, "n_mels") else 80, n_frames), dtype=np.float32)
        content: list[int] = []
        for i, samples in enumerate(audio):
            samples = samples[: window_s * RATE]
            padded = np.zeros(window_s * RATE, dtype=np.float32)
            padded[: samples.size] = samples
            feats = fe(padded, padding=0)  # silence padded *before* the log-mel: it reads as silence
            if feats.shape[-1] >= n_frames:
                feats = feats[:, :n_frames]
            else:
                feats = np.pad(feats, ((0, 0), (0, n_frames - feats.shape[-1])), mode="edge")
            batch[i] = feats
            content.append(min(n_frames, samples.size // fe.hop_length))
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        return encoded, content

    def _generate(self, encoded: Any, prompts: list[list[int]], reqs: list[DecodeRequest], tok: Any,
                  window_s: int, **extra: Any) -> list[DecodeResult]:
        caps = [self._max_new_tokens(r.samples.size) for r in reqs]
        max_length = min(448, max(len(p) + c for p, c in zip(prompts, caps, strict=True)))
        raw = self._model.model.generate(
            encoded,
            prompts,
            beam_size=reqs[0].beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            **extra,
        )
        out = []
        for r, p, cap in zip(raw, prompts, caps, strict=True):
            ids = [t for t in r.sequences_ids[0] if t < tok.eot]
            text = tok.decode(ids).strip()
            out.append(DecodeResult(
                text=text,
                avg_logprob=float(r.scores[0]) if r.scores else 0.0,
                no_speech_prob=float(r.no_speech_prob),
                window_s=window_s,
                capped=len(ids) >= cap or len(p) + len(ids) >= max_length,
            ))
        return out

    def _retry_repetition(self, req: DecodeRequest, window_s: int) -> DecodeResult:
        """Again without the term bias, repeated 3-grams forbidden; collapse whatever loop remains."""
        tok = self._tokenizer(req.language)
        encoded, _ = self._encode([req.samples], window_s)
        res = self._generate(encoded, [self._prompt(tok, req.fallback_prompt)], [req], tok, window_s,
                             no_repeat_ngram_size=3, repetition_penalty=1.1)[0]
        return replace(res, text=collapse_repetition(res.text), retried="repetition")

    def _words(self, tok: Any, res: DecodeResult, encoded: Any, index: int, frames: int) -> tuple[WordInfo, ...]:
        import ctranslate2

        ids = tok.encode(" " + res.text)
        if not ids:
            return ()
        one = encoded if _batch_size(encoded) == 1 else _select(encoded, index, ctranslate2)
        aligned = self._model.find_alignment(tok, [ids], one, frames)
        words = aligned[0] if aligned else []
        out: list[WordInfo] = []
        for w in words:
            text = w["word"].strip()
            if not text:
                continue
            if out and not any(c.isalnum() for c in text):
                out[-1] = replace(out[-1], text=out[-1].text + text)  # punctuation joins its word
                continue
            out.append(WordInfo(text, round(float(w["start"]), 2), round(float(w["end"]), 2),
                                round(float(w["probability"]), 3)))
        return tuple(out)

    def _truncated(self, req: DecodeRequest, res: DecodeResult) -> bool:
        if not res.words:
            return False
        audio_s = req.samples.size / RATE
        return audio_s - res.words[-1].end_s > self.policy.coverage_gap_s

    def _silence_guard(self, res: DecodeResult) -> DecodeResult:
        pol = self.policy
        if res.no_speech_prob > pol.no_speech_threshold and res.avg_logprob < pol.log_prob_threshold:
            return replace(res, text="", words=())
        return res

    # --- helpers ----------------------------------------------------------------------------
    def _max_new_tokens(self, n_samples: int) -> int:
        # Whisper's context holds 448 tokens, prompt included: stay well inside it.
        return min(224, int(16 + self.policy.max_tokens_per_s * n_samples / RATE))

    def _tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            from faster_whisper.tokenizer import Tokenizer

            tok = self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, True, task="transcribe", language=language)
        return tok

    def _prompt(self, tok: Any, text: str) -> list[int]:
        previous = tok.encode(" " + text.strip()) if text.strip() else []
        return self._model.get_prompt(tok, previous[-200:], without_timestamps=True)

    def _has_speech(self, samples: np.ndarray) -> bool:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        spans = get_speech_timestamps(samples, VadOptions(min_speech_duration_ms=120, min_silence_duration_ms=300))
        return bool(spans)


def _batch_size(view: Any) -> int:
    return int(view.shape[0])


def _select(view: Any, index: int, ctranslate2: Any) -> Any:
    """Row `index` of an encoder output batch (CPU StorageView → numpy → back)."""
    array = np.array(view)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[index : index + 1]))
