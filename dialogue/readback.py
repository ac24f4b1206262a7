"""Read-back of what matters, in one short question, before the triage acts on it (issue 12): critical
numbers (temperature, a baby's age in months, pregnancy weeks, blood sugar), a caller's denial of a finding
that would raise a red flag, and words the recogniser was unsure of (`CallerUtterance.uncertain_words`).
Never once the call is escalated (the dialogue does not ask then).

`detect()` looks at what one caller turn changed (a snapshot of the facts before it) and returns at most one
`ReadBackAsk`; `take()` applies the answer: "yes" keeps it; "no" undoes it (a number is asked again, a turn
heard wrongly is taken back and its question asked again, a denial read back as "or not?" is reversed);
"not sure" about a red-flag denial counts as present (when unsure, escalate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dialogue.confirm import confirm_text, would_fire
from dialogue.extract import Mention
from dialogue.facts import Facts, FindingValue, SlotEntry
from dialogue.knowledge import Knowledge
from dialogue.slots import slot_answer

CRITICAL_SLOTS = ("temp_c", "age_years", "pregnancy_weeks", "glucose_mmol")
SHORT_ANSWER_CHARS = 16  # a bare answer ("yes", "没有", "38.5"): any unsure word in it matters

Kind = Literal["number", "negation", "words", "renumber"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    findings: dict[str, FindingValue]
    slots: dict[str, SlotEntry]

    @classmethod
    def of(cls, facts: Facts) -> Snapshot:
        return cls(dict(facts.findings), dict(facts.slots))

    def restore(self, facts: Facts) -> None:
        facts.findings = dict(self.findings)
        facts.slots = dict(self.slots)


@dataclass(frozen=True, slots=True)
class ReadBackAsk:
    kind: Kind
    key: str  # the slot, the finding, or "" for the words of a turn
    text: str
    asked_turn: int
    before: Snapshot
    heard: str = ""  # what was read back (the value or the words)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


@dataclass
class ReadBack:
    lang: str
    kn: Knowledge
    mode: str = "triage"
    records: list[dict[str, Any]] = field(default_factory=list)
    confirmed: dict[str, float] = field(default_factory=dict)  # slot -> value the caller confirmed

    def _t(self, key: str, **kw: Any) -> str:
        return confirm_text()[self.lang].texts[key].format(**kw)

    def value_text(self, slot: str, v: float) -> str:
        nums = confirm_text()[self.lang].numbers
        if slot == "age_years":
            weeks = round(v * 52)
            if weeks < 13:
                return nums["age_weeks"].format(v=weeks)
            return nums["age_months"].format(v=_fmt(round(v * 12)))
        return nums[slot].format(v=_fmt(v))

    def detect(
        self,
        before: Snapshot,
        facts: Facts,
        mentions: dict[str, Mention],
        text: str,
        uncertain: tuple[str, ...],
        turn: int,
        answer_of: Callable[[str], str | None],
    ) -> ReadBackAsk | None:
        for slot in CRITICAL_SLOTS:
            e = facts.slots.get(slot)
            old = before.slots.get(slot)
            if e is None or e.turn != turn or (old is not None and old.value == e.value):
                continue
            if self.confirmed.get(slot) == e.value or (slot == "age_years" and e.value >= 1):
                continue
            heard = self.value_text(slot, e.value)
            return ReadBackAsk("number", slot, self._t("readback_number", value=heard), turn, before, heard)
        lay = confirm_text()[self.lang].lay
        for fid, v in facts.findings.items():
            was = before.findings.get(fid)
            if v.present or v.turn != turn or (was is not None and not was.present) or fid not in lay:
                continue
            in_words = fid in mentions and not mentions[fid].present  # the caller's own "no chest pain"
            if (in_words or uncertain) and would_fire(facts, self.kn, fid, self.mode):
                return ReadBackAsk("negation", fid, self._t("readback_negation", lay=lay[fid]), turn, before)
        if uncertain:
            changed = [v.span for f, v in facts.findings.items() if before.findings.get(f) is not v]
            changed += [e.span for s, e in facts.slots.items() if before.slots.get(s) is not e]
            low = text.lower()
            short = len(text.strip()) <= SHORT_ANSWER_CHARS
            spans = [c.lower() for c in changed]
            hit = [w for w in uncertain if w and w.lower() in low and (short or any(w.lower() in c for c in spans))]
            if hit and short and not changed:
                # a short answer is read back only when its answer hangs on an unsure word: "Yes, Go
                # ahead." with "Go" unsure is still a yes; "no" with "no" unsure is not known
                rest = low
                for w in hit:
                    rest = rest.replace(w.lower(), " ")
                if answer_of(rest) == answer_of(text):
                    hit = []
            if hit and (changed or short):
                said = text.strip()
                return ReadBackAsk("words", "", self._t("readback_words", text=said), turn, before, said)
        return None

    def ask_again(self, ask: ReadBackAsk, turn: int) -> ReadBackAsk:
        return ReadBackAsk("renumber", ask.key, self._t("ask_number_again"), turn, ask.before)

    def take(
        self, ask: ReadBackAsk, answer: str | None, mentions: dict[str, Mention], text: str, turn: int, facts: Facts
    ) -> Literal["kept", "undone", "ask_number", "reask"]:
        """Apply the answer; the caller's own words in it (a new number, "no, I do have chest pain") win."""
        outcome: Literal["kept", "undone", "ask_number", "reask"] = "kept"
        if ask.kind in ("number", "renumber"):
            e = facts.slots.get(ask.key)
            if (e is None or e.turn != turn) and answer != "yes":
                value = slot_answer(ask.key, text, self.lang)  # a bare "39.5" read in the slot's unit
                if value is not None:
                    facts.set_slot(ask.key, value, turn, text, text)
                    e = facts.slots[ask.key]
            corrected = e is not None and e.turn == turn  # "no, 39.5": the caller's correction
            if ask.kind == "renumber" or corrected or answer in ("yes", "unknown"):
                if e is not None:
                    self.confirmed[ask.key] = e.value
            elif answer == "no":
                old = ask.before.slots.get(ask.key)
                if old is None:
                    facts.slots.pop(ask.key, None)
                else:
                    facts.slots[ask.key] = old
                outcome = "ask_number"
        elif ask.kind == "negation":
            m = mentions.get(ask.key)
            if m is not None:
                present = m.present
            else:
                present = answer != "no"  # "yes", "not sure" or no clear answer: when unsure, escalate
            if present:
                facts.set_finding(ask.key, True, turn, text, text, source="readback")
                outcome = "undone"
        elif ask.kind == "words" and answer == "no":
            ask.before.restore(facts)
            outcome = "reask"
        self.records.append(
            {
                "kind": ask.kind,
                "what": ask.key or ask.heard,
                "question": ask.text,
                "asked_turn": ask.asked_turn,
                "answer": answer or "unclear",
                "answer_turn": turn,
                "outcome": outcome,
            }
        )
        return outcome
