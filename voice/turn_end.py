"""End of turn from what was said, not only from silence.

At a pause the call loop decodes what the caller has said so far (the speculative decode). This
module reads that text against the question pending:
- **complete**: an answer that satisfies it ("yes", "no", "三十八度五" after a number question):
  the turn ends now, without waiting out the rest of the silence;
- **unfinished**: a clause that cannot end there ("and then my…", "然后…", a trailing comma), or a turn
  that is only a greeting ("Hello?", "喂，你好", `openers`: the caller is about to say why they called):
  the endpointer holds the turn open longer, so a caller who is thinking is not cut off;
- **unknown**: anything else keeps the configured silence wait.
The words are data (prompts/<lang>/asr_terms.yaml, `turn_end`), editable by clinicians.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from voice.languages import LanguagePack, languages

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
Verdict = Literal["complete", "unfinished", "unknown"]


@dataclass(frozen=True, slots=True)
class TurnWords:
    answers: dict[str, tuple[str, ...]]  # kind → whole answers that complete a turn ("yes", "没有")
    unfinished_endings: tuple[str, ...]  # a turn cannot end on these ("and", "my", "然后", "还有")
    max_answer_words: int = 4  # "no I don't" completes; a longer sentence is judged by its ending only
    openers: tuple[str, ...] = ()  # a turn of these alone opens the call ("hello", "喂"): more follows


@functools.lru_cache(maxsize=4)
def turn_words(language: str) -> TurnWords:
    path = PROMPTS / language / "asr_terms.yaml"
    data = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("turn_end") or {} if path.exists() else {}
    answers = {str(k): tuple(str(w).lower() for w in v or []) for k, v in (data.get("answers") or {}).items()}
    endings = tuple(str(w).lower() for w in data.get("unfinished_endings") or [])
    openers = tuple(str(w).lower() for w in data.get("openers") or [])
    return TurnWords(answers, endings, int(data.get("max_answer_words", 4)), openers)


def _units(text: str, pack: LanguagePack) -> list[str]:
    """Words, where words are spaced; else the whole answer as one run of characters."""
    if not pack.spaced:
        return [re.sub(r"[^\w]", "", text)]
    return re.findall(r"[a-z0-9']+(?:\.\d+)?", text.lower())


def only_openers(text: str, language: str, words: TurnWords | None = None) -> bool:
    """The turn is nothing but a greeting ("Hello?", "Hi, hello.", "喂，你好"): the caller has not said why
    they called yet, and usually goes straight on. Answered at once, the bot's reply would start just as
    they do, over their first words (issue 12)."""
    words = words or turn_words(language)
    core = re.sub(r"[\W_]+", " ", text.lower()).strip()
    if not words.openers or not core:
        return False
    phrases = "|".join(re.escape(p) for p in sorted(words.openers, key=len, reverse=True))  # "hi there" before "hi"
    if languages[language].spaced:
        return not re.sub(rf"\b(?:{phrases})\b", " ", core).strip()
    return not re.sub(phrases, "", core.replace(" ", ""))


def verdict(text: str, language: str, expected: str = "free", words: TurnWords | None = None) -> Verdict:
    """How the partial transcript `text` bears on ending the turn after the question of kind `expected`."""
    words = words or turn_words(language)
    pack = languages[language]
    stripped = text.strip()
    if not stripped:
        return "unknown"
    if stripped.endswith(("...", "…", ",", "，", "、", "-")) or only_openers(stripped, language, words):
        return "unfinished"
    core = re.sub(r"[\s。．.!！?？]+$", "", stripped).lower()
    if not pack.spaced:
        if any(core.endswith(w) for w in words.unfinished_endings):
            return "unfinished"
    else:
        last = (re.findall(r"[a-z']+", core) or [""])[-1]
        phrases = [w for w in words.unfinished_endings if " " in w]
        if last in words.unfinished_endings or any(core.endswith(" " + w) for w in phrases):
            return "unfinished"
    units = _units(core, pack)
    if expected in ("number", "duration", "scale") and _has_number(core, pack):
        if not pack.spaced or len(units) <= words.max_answer_words + 2:
            return "complete"
    answers = words.answers.get(expected, ())
    if answers:
        if not pack.spaced:
            flat = units[0] if units else ""
            if flat in answers or (len(flat) <= 4 and any(flat.startswith(a) for a in answers if len(a) >= 2)):
                return "complete"
        elif units and len(units) <= words.max_answer_words and (
            " ".join(units) in answers or units[0] in answers
        ):
            return "complete"
    return "unknown"


def _has_number(text: str, pack: LanguagePack) -> bool:
    if re.search(r"\d", text):
        return True
    if not pack.spaced:
        return any(c in pack.number_words for c in text)
    return any(w in pack.number_words for w in re.findall(r"[a-z]+", text))
