"""How Whisper is steered for one language and one turn: the initial prompt (language, triage terms,
what the question just asked expects), and the Mandarin pinyin term fixer applied afterwards.

Measured (shared/FIELD-NOTES.md): for Mandarin the prompt "以下是普通话的句子。" plus ~14 triage terms
took CER from 24% to 12% on triage sentences, and the pinyin fixer (割薄 → 胳膊) to 6%. A long prompt
makes Whisper invent symptoms and loop ("胳膊胳膊胳膊…"), so every prompt is capped
(`MAX_HINT_PHRASES`, `MAX_PROMPT_CHARS`), and biased decodes are VAD-gated (voice.asr_decode).
The lexicons are data (prompts/<lang>/asr_terms.yaml) that clinicians may edit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pypinyin import Style, lazy_pinyin, pinyin

from voice.languages import languages
from voice.ports import RecognitionHints

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
DEFAULT_ZH_TERMS = PROMPTS / "zh" / "asr_terms.yaml"
MAX_HINT_PHRASES = 8  # per turn, after the kind's own words
MAX_PROMPT_CHARS = 120  # the whole prompt; Whisper's context is 448 tokens and long prompts loop
SHORT_ANSWER_S = 1.5  # an utterance this short after such a question is the answer itself
SHORT_KINDS = frozenset({"yes_no", "number", "scale", "duration"})  # answers whose prompt is their own words


# --- the pinyin term fixer -----------------------------------------------------------------


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
class TurnBias:
    """A language's steering: the base prompt, the terms it always carries, the words each answer kind
    expects (yes/no, numbers and units…), and the post-fixer. `prompt_for(hints)` builds one turn's
    prompt; `fallback_prompt` is what a decode that looped is retried with (no term bias)."""

    language: str
    base: str = ""
    terms: tuple[str, ...] = ()
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixer: TermFixer | None = None

    @property
    def active(self) -> bool:
        return bool(self.base or self.terms or self.kinds) or self.fixer is not None

    @property
    def prompt(self) -> str:
        """The standing prompt (no turn hints)."""
        return self.prompt_for(None)

    @property
    def fallback_prompt(self) -> str:
        return self.base

    def prompt_for(self, hints: RecognitionHints | None = None, *, audio_s: float | None = None) -> str:
        """Base prompt, then the words this turn expects, then the standing terms, within the caps.
        A short utterance (≤ SHORT_ANSWER_S) after a short-answer question gets no standing terms."""
        expected: list[str] = []
        if hints is not None:
            expected += self.kinds.get(hints.kind, ())
            expected += [p.strip() for p in hints.phrases[:MAX_HINT_PHRASES] if p.strip()]
        # A short answer's prompt carries only its own words: the standing symptom terms made Whisper
        # hear "有" as "胳膊、胳膊" after a yes/no question (bench/asr.py --synthetic).
        # A caller who answers a yes/no question with a sentence ("我从昨天开始发烧，还咳嗽") still needs them.
        short = hints is not None and hints.kind in SHORT_KINDS and (audio_s is None or audio_s <= SHORT_ANSWER_S)
        standing = [] if short else list(self.terms)
        phrases = list(dict.fromkeys(expected + standing))
        pack = languages[self.language]
        sep, end = pack.list_separator, pack.sentence_end
        kept: list[str] = []
        for phrase in phrases:
            if len(self.base) + len(sep.join([*kept, phrase])) + len(end) > MAX_PROMPT_CHARS:
                break
            kept.append(phrase)
        if not kept:
            return self.base
        joiner = pack.word_joiner if self.base else ""
        return self.base + joiner + sep.join(kept) + end


def load_bias(language: str, path: Path | None = None) -> TurnBias:
    """prompts/<language>/asr_terms.yaml → TurnBias (no file: no bias)."""
    path = path or PROMPTS / language / "asr_terms.yaml"
    if not Path(path).exists():
        return TurnBias(language)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    base = str(data.get("prompt", "")).strip()
    terms = tuple(str(t) for t in data.get("prompt_terms") or [])
    kinds = {str(k): tuple(str(w) for w in v or []) for k, v in (data.get("answer_kinds") or {}).items()}
    fix = [str(t) for t in data.get("fix_terms") or []]
    fix += lexicon_fix_terms(data.get("fix_from_lexicon") or {}, Path(path).parent / "lexicon.yaml")
    fixer = TermFixer.build(fix, data.get("never_rewrite") or []) if fix else None
    return TurnBias(language, base, terms, kinds, fixer if fixer and fixer.terms else None)


_LITERAL = re.compile(r"[\u4e00-\u9fff]+")
# A phrase with one of these is too close to everyday speech to rewrite towards ("上海自己" → "伤害自己").
_EVERYDAY = frozenset("一不没有了的很得是在要会就还也都太好大小多少点个这那自己我你他她它们")


def lexicon_fix_terms(spec: dict, lexicon_path: Path) -> list[str]:
    """The fixer generalised to the lexicon: the plain phrases (no pattern syntax) of the listed
    findings, `min_chars`+ hanzi long, without everyday characters. Patterns stay out: a fixer must
    only ever produce a phrase a clinician wrote down."""
    findings = [str(f) for f in spec.get("findings") or []]
    if not findings or not lexicon_path.exists():
        return []
    min_chars = max(3, int(spec.get("min_chars", 3)))
    lex = (yaml.safe_load(lexicon_path.read_text(encoding="utf-8")) or {}).get("findings") or {}
    unknown = [f for f in findings if f not in lex]
    if unknown:
        raise ValueError(f"fix_from_lexicon names findings not in {lexicon_path.name}: {unknown}")
    out: list[str] = []
    for finding in findings:
        for phrase in lex[finding]:
            phrase = str(phrase)
            if _LITERAL.fullmatch(phrase) and len(phrase) >= min_chars and not set(phrase) & _EVERYDAY:
                out.append(phrase)
    return out


def load_zh_bias(path: Path = DEFAULT_ZH_TERMS) -> TurnBias:
    return load_bias("zh", path)


LanguageBias = TurnBias  # the earlier name


# --- traditional → simplified ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    import opencc  # imported lazily: only Mandarin needs it

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Whisper sometimes answers in traditional characters even when prompted; the records are simplified."""
    return _t2s().convert(text) if text else text


_FULLWIDTH = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "："})


def fullwidth_punctuation(text: str) -> str:
    """Whisper writes ASCII commas between hanzi; the records and the console show Chinese punctuation.
    Only punctuation touching a hanzi changes, so "38.5" or "B超, CT" keep theirs where they should."""
    chars = list(text)
    for i, ch in enumerate(chars):
        if ch in ",?!;:" and (
            (i > 0 and _is_hanzi(chars[i - 1])) or (i + 1 < len(chars) and _is_hanzi(chars[i + 1]))
        ):
            chars[i] = ch.translate(_FULLWIDTH)
    return "".join(chars).replace("， ", "，")
