"""What is known about the caller so far: findings (present or denied) and numbers, each with the
utterance it came from; derived findings (fever from 38.5 °C, infant from "two months old")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dialogue.extract import Extraction
from dialogue.protocols import Catalog, Cond, num_test
from voice.result import Evidence, Finding


@dataclass(slots=True)
class FindingValue:
    present: bool
    turn: int
    text: str  # the caller's utterance
    span: str  # the words that said it
    source: str = "rules"  # rules | answer | llm


@dataclass(slots=True)
class Suspicion:
    """A finding the understanding layers only half-heard (semantic score between its two thresholds, or a
    red-flag word whose time or intent is unclear): to be confirmed with the caller, never dropped."""

    turn: int
    text: str
    span: str
    score: float = 0.0
    source: str = "semantic"  # semantic | temporal | llm | picture:<red flag>


@dataclass(slots=True)
class SlotEntry:
    value: float
    turn: int
    text: str
    span: str


class Facts:
    def __init__(self, lang: str = "") -> None:
        # The language the caller's words are in (`utterances`): department routing reads them with
        # its terms. "" where the facts hold no words of their own (a trial copy, a record's findings).
        self.lang = lang
        self.findings: dict[str, FindingValue] = {}
        self.slots: dict[str, SlotEntry] = {}
        self._derived: set[str] = set()
        self._suppressed: set[str] = set()
        self._suspected: dict[str, Suspicion] = {}
        self.utterances: list[str] = []  # the caller's words, in order (department routing reads them)

    # --- updates: a later statement replaces an earlier one (corrections) ------------------------
    def set_finding(self, fid: str, present: bool, turn: int, text: str, span: str, source: str = "rules") -> None:
        self.findings[fid] = FindingValue(present, turn, text, span, source)

    def suspect(self, fid: str, turn: int, text: str, span: str, score: float = 0.0, source: str = "semantic") -> None:
        """Note a suspected finding; a finding already stated (present or denied) needs no suspicion."""
        if fid not in self.findings:
            self._suspected[fid] = Suspicion(turn, text, span, score, source)

    def suspected(self) -> list[str]:
        """Suspected findings not yet settled by the caller, earliest first."""
        return sorted((f for f in self._suspected if f not in self.findings), key=lambda f: self._suspected[f].turn)

    def suspicion(self, fid: str) -> Suspicion | None:
        return self._suspected.get(fid)

    def set_slot(self, slot: str, value: float, turn: int, text: str, span: str) -> None:
        self.slots[slot] = SlotEntry(value, turn, text, span)

    def add(self, ext: Extraction, turn: int, text: str, source: str = "rules") -> list[str]:
        """Merge one utterance's extraction; returns the ids of findings it set present."""
        if text:
            self.utterances.append(text)
        new: list[str] = []
        for fid, m in ext.findings().items():
            self.set_finding(fid, m.present, turn, text, m.span, m.via or source)
            if m.present:
                new.append(fid)
        for s in ext.slots:
            self.set_slot(s.slot, s.value, turn, text, s.span)
        for m in ext.suspected:
            self.suspect(m.finding, turn, text, m.span, m.score, m.via or "temporal")
        return new

    # --- queries ---------------------------------------------------------------------------------
    def present(self, fid: str) -> bool:
        if fid in self._suppressed:
            return False
        v = self.findings.get(fid)
        return (v is not None and v.present) or fid in self._derived

    def known(self, fid: str) -> bool:
        return fid in self.findings or fid in self._derived

    def num(self, slot: str) -> float | None:
        e = self.slots.get(slot)
        return e.value if e else None

    def holds(self, c: Cond) -> bool:
        if c.all and not all(self.present(f) for f in c.all):
            return False
        if c.any and not any(self.present(f) for f in c.any):
            return False
        if c.none and any(self.present(f) for f in c.none):
            return False
        if any(not num_test(self.num(s), t) for s, t in c.num.items()):
            return False
        return not (c.or_ and not any(self.holds(x) for x in c.or_))

    def derive(self, catalog: Catalog) -> None:
        """Recompute derived findings. A stated age is authoritative over words like "my son"."""
        self._derived = set()
        self._suppressed = set()
        age = self.num("age_years")
        if age is not None:
            if age >= 16:
                self._suppressed |= {"child", "baby"}
            elif age >= 1:
                self._suppressed.add("baby")
        temp = self.slots.get("temp_c")
        said = self.findings.get("fever")
        generic = said is not None and re.search(r"temperature|temp\b|体温|热度", said.span, re.IGNORECASE)
        low = temp is not None and temp.value < 37.8
        if low and said is not None and said.present and generic and temp is not None and temp.turn >= said.turn:
            self._suppressed.add("fever")  # "a temperature of 37.6" is not a fever; "low-grade fever 37.7" is
        for _ in range(2):  # derived findings may build on each other
            for d in catalog.derived:
                if d.finding in self._suppressed or not self.holds(d.when):
                    continue
                said = self.findings.get(d.finding)
                turns = [self.slots[s].turn for s in d.when.num if s in self.slots]
                if said is not None and not said.present and turns and said.turn >= max(turns):
                    continue  # "it was 38.5 but the fever has gone now": the later denial stands
                self._derived.add(d.finding)

    def first_turn(self, fid: str) -> int:
        v = self.findings.get(fid)
        return v.turn if v else 10**6

    def evidence(self) -> tuple[Finding, ...]:
        """Every finding with the caller's words it rests on; derived ones (fever from 38.5 °C) have none."""
        out = [
            Finding(fid, v.present, v.source, Evidence(v.turn, v.text, v.span)) for fid, v in self.findings.items()
        ]
        out += [Finding(fid, True, "derived") for fid in sorted(self._derived) if fid not in self.findings]
        return tuple(out)
