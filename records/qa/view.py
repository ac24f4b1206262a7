"""A finished call as the QA checks read it: plain frozen data taken from the record (so the checks
are pure functions, testable without a database), and the text matching they share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from records.models import Call
from voice.languages import languages
from voice.result import CallResult


@dataclass(frozen=True, slots=True)
class UncertainWord:
    word: str
    p: float | None  # the recogniser's probability, when it gave one


@dataclass(frozen=True, slots=True)
class TurnView:
    idx: int
    speaker: str  # caller | bot | nurse
    text: str  # bot: what it meant to say; caller: the final transcript
    heard: str  # what the caller actually heard (bot turns cut by a barge-in: the heard part)
    interrupted: bool
    start_s: float
    end_s: float
    voice_to_voice_ms: float | None = None
    uncertain: tuple[UncertainWord, ...] = ()


@dataclass(frozen=True, slots=True)
class CallView:
    call_id: str
    mode: str  # triage | followup
    language: str  # zh | en
    end_reason: str | None
    disposition: str | None  # what the bot decided (not a nurse's override)
    red_flags: tuple[str, ...]
    result: CallResult = field(default_factory=lambda: CallResult(mode="triage"))
    has_result: bool = False  # the dialogue's result was stored (a call cut off has none)
    params: dict[str, Any] = field(default_factory=dict)
    turns: tuple[TurnView, ...] = ()

    @property
    def lang(self) -> str:
        return languages.or_fallback(self.language).code

    def bot(self) -> list[TurnView]:
        return [t for t in self.turns if t.speaker == "bot"]

    def caller(self) -> list[TurnView]:
        return [t for t in self.turns if t.speaker == "caller"]


def heard_text(text: str, heard: str | None, interrupted: bool) -> str:
    """What the caller heard of a bot turn: all of it, or (after a barge-in) the recorded heard part;
    an interrupted turn without a heard part counts as unheard."""
    if not interrupted:
        return text
    return heard or ""


def uncertain_words(raw: Any) -> tuple[UncertainWord, ...]:
    """Whatever shape the recogniser's words came in: ["word"], [("word", 0.3)], [{"word", "p"|
    "probability"}], or objects with .word/.probability. Unreadable entries are skipped."""
    out: list[UncertainWord] = []
    for item in raw or ():
        word: Any
        p: Any = None
        if isinstance(item, str):
            word = item
        elif isinstance(item, dict):
            word = item.get("word") or item.get("text")
            p = item.get("p", item.get("probability"))
        elif isinstance(item, list | tuple) and item:
            word, p = item[0], (item[1] if len(item) > 1 else None)
        else:
            word, p = getattr(item, "word", None), getattr(item, "probability", getattr(item, "p", None))
        if not isinstance(word, str) or not word.strip():
            continue
        try:
            prob = float(p) if p is not None else None
        except (TypeError, ValueError):
            prob = None
        out.append(UncertainWord(word.strip(), prob))
    return tuple(out)


def view_of(call: Call) -> CallView:
    turns = tuple(
        TurnView(
            idx=t.idx,
            speaker=t.speaker,
            text=t.text or "",
            heard=heard_text(t.text or "", t.heard_text, t.interrupted) if t.speaker == "bot" else t.text or "",
            interrupted=bool(t.interrupted),
            start_s=float(t.start_s or 0.0),
            end_s=float(t.end_s or 0.0),
            voice_to_voice_ms=t.voice_to_voice_ms,
            uncertain=uncertain_words(t.uncertain_words),
        )
        for t in sorted(call.turns, key=lambda t: t.idx)
    )
    return CallView(
        call_id=call.id,
        mode=call.mode or "triage",
        language=call.language or "en",
        end_reason=call.end_reason,
        disposition=call.disposition,
        red_flags=tuple(r.flag for r in call.red_flags),
        result=call.call_result,
        has_result=bool(call.result),
        params=dict(call.params or {}),
        turns=turns,
    )


# --- matching what was said against the phrasings of prompts/ ---------------------------------------
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)  # keeps letters, digits and hanzi
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def norm(text: str) -> str:
    return _PUNCT.sub("", text or "").lower()


def phrase_pattern(template: str) -> re.Pattern[str]:
    """A phrasing with its {placeholders} (the emergency number, a name) as short wildcards, matched
    on normalised text (no spaces or punctuation, lower case)."""
    parts = [re.escape(norm(p)) for p in _PLACEHOLDER.split(template)]
    return re.compile(r".{0,40}?".join(parts))


def says(text: str, template: str) -> bool:
    return bool(phrase_pattern(template).search(norm(text)))


def contains_any(text: str, words: list[str]) -> bool:
    t = norm(text)
    return any(norm(w) in t for w in words if norm(w))


def excerpt(text: str, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
