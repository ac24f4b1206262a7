"""Time and intent of each mention: is the caller telling what is happening now, something in the past,
a hypothetical, a question about treatment, or a condition they already have? Markers and their scope
are data (prompts/<lang>/time_intent.yaml); this module only applies them.

Policy (what each reading means for triage) lives in `decide`:
- present                                  → a finding
- past                                     → history: not a present finding, not a red flag
- known                                    → history for a red flag or a condition name; a symptom that is
                                             chronic is still a symptom ("a chronic cough")
- hypothetical, question, experiential     → for a finding that can raise a red flag on its own: *suspected*
  (the bot confirms it); otherwise a present finding for the question/experiential case ("which medicine
  for his cough" still tells us he coughs), history for the hypothetical one.
- reported (what a programme, the news or hearsay told: "on the telly a woman collapsed", "听人说血糖太高会
  昏迷"; it runs on to the end of its sentence) → as hypothetical: someone else's story, confirmed if it
  could be a red flag of the patient's, history otherwise.
- lasting ("it's been like that for a year", 一直这样, in its clause or the one after) → for a red-flag finding
  *suspected* (is it new? the bot asks), otherwise a finding: a long-standing state is not a new emergency.
- hypothetical or question in an *enquiry* → history: the caller says the call is only to find out
  ("I just want to be prepared", "提前了解一下", "我在网上看到的"), so a red flag named in a question or an
  "if" is the subject of the question, not the patient's. A present mention stays present whatever the
  utterance says ("I'm just asking, but my baby is six weeks old and has a fever" is a fever now).
A condition name ("epilepsy", 癫痫) in a question, a known-condition or a past clause is history, even
for a red flag: "can epilepsy be cured?" is not a seizure now."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dialogue.knowledge import PROMPTS_DIR, read_yaml
from dialogue.lexicon import compile_many
from dialogue.protocols import ProtocolError
from voice.languages import languages

Tense = Literal["present", "past", "hypothetical", "question", "reported", "known", "experiential", "lasting"]
Verdict = Literal["finding", "suspected", "history"]
ORDER: tuple[Tense, ...] = (  # type: ignore[assignment]
    "hypothetical", "question", "reported", "recent", "past", "known", "experiential", "lasting"
)

_EN_CLAUSE = re.compile(r"[.;!?\n,，。；！？]|\b(?:and|but|so|because)\b", re.IGNORECASE)
_ZH_CLAUSE = re.compile(r"[，。；！？,.;!?\n]|但是|可是|不过")
_EN_AS_IF = re.compile(r"\b(?:as|even) if\b|\bif (?:you|i) (?:can|could|may)\b", re.IGNORECASE)
_ZH_QUESTION_END = re.compile(r"[吗呢么？?]\s*$")
_SENTENCE_END = re.compile(r"[.!?。！？\n]")
_CONTRAST = re.compile(r"\bbut\b|但是|可是|不过", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _ClauseRules:
    """How one rule set (`voice.languages.LanguagePack.rules`) cuts and reads clauses for time."""

    clause: re.Pattern[str]
    not_a_marker: re.Pattern[str] | None  # wording that only looks like a time marker ("as if")
    marker_only_chars: int  # what else a clause that is only a time marker may hold
    question_end: re.Pattern[str] | None  # a clause that is a question by its last character ("吗")


_RULES = {
    "zh": _ClauseRules(_ZH_CLAUSE, None, 2, _ZH_QUESTION_END),
    "en": _ClauseRules(_EN_CLAUSE, _EN_AS_IF, 6, None),
}


@dataclass(frozen=True, slots=True)
class Reading:
    tense: Tense
    marker: str  # the words that decided it ("" for the default present)
    condition_term: bool  # the span names a condition (epilepsy), not an event
    inherited: bool = False  # the marker came from an earlier clause of the same sentence
    enquiry: bool = False  # the utterance says it only asks for information ("just want to be prepared")


class TemporalReader:
    def __init__(self, data: dict[str, object], lang: str, *, where: str = "") -> None:
        self.lang = lang
        self.rules = _RULES[languages.or_fallback(lang).rules]
        markers = data.get("markers") or {}
        if not isinstance(markers, dict):
            raise ProtocolError(f"{where}: markers: a mapping of marker class → phrases is required")
        extra = set(data) - {
            "markers", "condition_terms", "timeless", "condition_events", "now_forms", "enquiry", "runs_on"
        }
        if extra:
            raise ProtocolError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        unknown = set(markers) - set(ORDER)
        if unknown:
            raise ProtocolError(f"{where}: markers: unknown class(es) {', '.join(sorted(unknown))} (known: {ORDER})")
        self._rx = {k: compile_many(v or [], lang, where=f"{where}: markers.{k}") for k, v in markers.items()}
        self.timeless = frozenset(data.get("timeless") or [])
        runs_on = data.get("runs_on", ["past"])
        if not isinstance(runs_on, list) or not set(runs_on) <= set(ORDER):
            raise ProtocolError(f"{where}: runs_on: a list of marker classes is required (known: {ORDER})")
        self.runs_on = frozenset(runs_on)
        now = data.get("now_forms") or []
        self._now = compile_many(now, lang, where=f"{where}: now_forms") if now else None
        enquiry = data.get("enquiry") or []
        self._enquiry = compile_many(enquiry, lang, where=f"{where}: enquiry") if enquiry else None
        events = data.get("condition_events") or []
        self._events = compile_many(events, lang, where=f"{where}: condition_events") if events else None
        terms = data.get("condition_terms") or {}
        self._conditions = {
            fid: compile_many(v or [], lang, where=f"{where}: condition_terms.{fid}") for fid, v in terms.items()
        }

    def clauses(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each clause, in order."""
        out, lo = [], 0
        for m in self.rules.clause.finditer(text):
            out.append((lo, m.start()))
            lo = m.end()
        out.append((lo, len(text)))
        return out

    def _marker(self, clause: str) -> tuple[str, str] | None:
        if self.rules.not_a_marker is not None:
            clause = self.rules.not_a_marker.sub(" ", clause)
        for k in ORDER:
            rx = self._rx.get(k)
            if rx is None:
                continue
            m = rx.search(clause)
            if m:
                return k, m.group(0)
        return None

    def read(self, text: str, start: int, end: int, fid: str = "") -> Reading:
        """How the mention text[start:end] is meant, from the markers of its clause."""
        spans = self.clauses(text)
        i = next((k for k, (lo, hi) in enumerate(spans) if lo <= start < hi or (lo <= start and end <= hi)), 0)
        lo, hi = spans[i]
        clause = text[lo:hi]
        span = text[start:end]
        cond_rx = self._conditions.get(fid)
        is_condition = bool(cond_rx and cond_rx.search(span))
        found = self._marker(clause)
        inherited = False
        ongoing = self._now is not None and bool(self._now.search(clause))  # "he's fitting", 正在抽
        if found is None and i > 0 and not ongoing:
            # a clause that is only a time marker ("Two years ago, he had a fit") governs the next one
            prev = text[spans[i - 1][0] : spans[i - 1][1]].strip()
            m = self._marker(prev)
            if m is not None and m[0] in ("past", "recent"):
                rest = re.sub(r"\W+", "", prev.replace(m[1], "", 1))
                if len(rest) <= self.rules.marker_only_chars:
                    found = m
        if found is None and not ongoing:
            # a past marker earlier in the same sentence: the narrative goes on in the past, but only as a
            # reading of unclear time ("之前…出现了口吐白沫，四肢抽搐" — or is it happening again now?)
            # the classes of `runs_on` go on to the end of their sentence, or to a "but" ("节目讲主动脉夹层，
            # 说胸背撕裂样疼"; "要是有人噎住了，脸憋得通红说不出话，怎么办")
            nxt = spans[i][0]
            for lo2, hi2 in reversed(spans[:i]):
                between = text[hi2:nxt]
                if _SENTENCE_END.search(between[:1]) or _CONTRAST.search(between):
                    break
                nxt = lo2
                m = self._marker(text[lo2:hi2])
                if m is not None:
                    if m[0] in self.runs_on:
                        found, inherited = m, True
                    break
        if found is None and not ongoing and i + 1 < len(spans) and "lasting" in self._rx:
            # "he gets confused in the evenings, it's been like that for a year": said of what came before
            # (not "…, it's been like this since this morning": a recent start is no lasting state)
            after = text[spans[i + 1][0] : spans[i + 1][1]]
            m = self._rx["lasting"].search(after)
            recent = self._rx.get("recent")
            if m is not None and (recent is None or not recent.search(after)):
                found = ("lasting", m.group(0))
        if is_condition and (found is None or found[0] == "recent"):
            events = self._events
            if events is None or not events.search(clause):
                return Reading("known", found[1] if found else "", True)
        question_end = self.rules.question_end
        if found is None and question_end is not None and question_end.search(clause) and is_condition:
            found = ("question", clause[-1])
        if found is None:
            return Reading("known" if is_condition else "present", "", is_condition)
        kind, words = found
        tense: Tense = "present" if kind == "recent" else kind  # type: ignore[assignment]
        enquiry = self._enquiry is not None and bool(self._enquiry.search(text))
        return Reading(tense, words, is_condition, inherited, enquiry)


def decide(reading: Reading, alarm: bool) -> Verdict:
    """What a positive mention becomes: a finding, a suspicion the bot confirms, or history."""
    t = reading.tense
    if t == "present":
        return "finding"
    if t == "past" and reading.inherited and not reading.condition_term:  # "之前…，四肢抽搐": or is it now?
        return "suspected" if alarm else "finding"
    if t == "lasting":
        return "suspected" if alarm else "finding"
    if t == "known" and not alarm and not reading.condition_term:
        return "finding"  # a chronic cough is still a cough today; only red flags need a new event
    if t in ("past", "known"):
        return "history"
    if reading.condition_term:
        return "history"  # "can epilepsy be cured?", "if his epilepsy gets worse"
    if reading.enquiry and t in ("hypothetical", "question", "reported"):
        return "history"  # "what should I do if he ever has a fit? I just want to be ready"
    if alarm:
        return "suspected"  # a red flag whose time is unclear is confirmed, never dropped
    return "history" if t in ("hypothetical", "reported") else "finding"


@lru_cache(maxsize=4)
def reader(lang: str, root: str = str(PROMPTS_DIR)) -> TemporalReader:
    lang = languages.or_fallback(lang).code
    path = Path(root) / lang / "time_intent.yaml"
    data = read_yaml(path) or {}
    return TemporalReader(data, lang, where=str(path))
