"""What CareCall knows about one language, in one typed object: `LanguagePack`.

Everything that differs between Mandarin and English outside the dialogue's own data lives in a pack:
how numbers are spelled, how text is rewritten for the voice, how streamed text is cut into clauses,
whether words are written with spaces, what goes between listed items and between clauses, the
recogniser's language code, the default voice, the local emergency number. What a clinician may change
(the words a key press stands for, the default hospital name) is data in `prompts/<code>/language.yaml`,
read by `LanguageData.load`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True, slots=True)
class ClauseLengths:
    """How long a streamed clause must be before a comma may end it (`voice.textnorm.ClauseSplitter`):
    the first clause short, so the caller hears something early; later ones longer, for prosody."""

    first_min_chars: int
    min_chars: int
    max_chars: int


@dataclass(frozen=True, slots=True)
class LanguageData:
    """The clinician-editable part of a pack (`prompts/<code>/language.yaml`)."""

    dtmf_words: Mapping[str, str]  # a key press stands for these words ("1" → "yes")
    default_hospital: str  # how the bot names the hospital when a call does not say which

    @staticmethod
    def load(code: str, prompts: Path = PROMPTS) -> LanguageData:
        path = prompts / code / "language.yaml"
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping")
        dtmf = raw.get("dtmf_words") or {}
        if not isinstance(dtmf, dict) or not all(str(k) in "0123456789*#" and len(str(k)) == 1 for k in dtmf):
            raise ValueError(f"{path}: dtmf_words maps single keys (0-9, *, #) to words")
        hospital = str(raw.get("default_hospital") or "").strip()
        if not hospital:
            raise ValueError(f"{path}: default_hospital is required")
        return LanguageData(MappingProxyType({str(k): str(v) for k, v in dtmf.items()}), hospital)


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class LanguagePack:
    """One language of CareCall (see `voice.languages` for the registry and how to add one)."""

    code: str  # CallInfo.language, the API's "language", the folder in prompts/
    name: str  # for people: "Mandarin"
    asr_code: str  # the recogniser's (Whisper's) language code
    spaced: bool  # words are written with spaces between them (English) or not (Mandarin)
    list_separator: str  # between listed items: "、" / ", "
    clause_separator: str  # between clauses of one sentence: "，" / ", "
    sentence_end: str  # "。" / "."
    emergency_number: str  # the default; Settings.emergency_numbers may override it
    tts_engines: tuple[str, ...]  # voice engines that speak it, the default first (server.py builds them)
    clause_lengths: ClauseLengths
    spell_int: Callable[[int], str]  # 38 → "thirty-eight" / "三十八"
    spell_number: Callable[[str], str]  # "38.5" → "thirty-eight point five" / "三十八点五"
    spell_digits: Callable[[str], str]  # "120" → "one two zero" / "幺二零"
    normalize: Callable[[str], str]  # text as this language's voice must say it (voice.textnorm)
    read_numbers: Callable[[str], str]  # numbers as callers say them, as digits: "三十八度三" → "38度3"
    # Words (characters, where words are not spaced) that make an answer a number without digits.
    number_words: frozenset[str]
    finish_transcript: Callable[[str], str] = _identity  # the recogniser's text made canonical (script, punctuation)
    # Whose rule tables the dialogue reads this language's text with (slot patterns, negation, the
    # guard): its own ("" = code), or a close language's while it has none (Cantonese: "zh").
    rules_from: str = ""
    prompts: Path = field(default=PROMPTS, compare=False)

    @property
    def rules(self) -> str:
        """The code the dialogue's per-language rule tables are keyed by (see `rules_from`)."""
        return self.rules_from or self.code

    @property
    def word_joiner(self) -> str:
        """What goes between two pieces of text that follow each other: a space, or nothing."""
        return " " if self.spaced else ""

    def join(self, parts: Iterable[str]) -> str:
        """Pieces of one utterance joined as this language writes them."""
        return self.word_joiner.join(p.strip() for p in parts if p.strip())

    def continue_text(self, so_far: str, piece: str) -> str:
        """What goes before `piece` when it follows `so_far` in one reply: streamed pieces carry their
        own spaces, but a new sentence after a finished one needs the word joiner ("door. I can", not
        "door.I can"; never "38." + "5")."""
        if self.spaced and so_far[-1:] in (".", "!", "?") and piece[:1].isupper():
            return self.word_joiner
        return ""

    def join_list(self, items: Iterable[str]) -> str:
        return self.list_separator.join(items)

    @property
    def data(self) -> LanguageData:
        return _data(self.code, self.prompts)

    @property
    def dtmf_words(self) -> Mapping[str, str]:
        return self.data.dtmf_words

    @property
    def default_hospital(self) -> str:
        return self.data.default_hospital


@functools.lru_cache(maxsize=16)
def _data(code: str, prompts: Path) -> LanguageData:
    return LanguageData.load(code, prompts)
