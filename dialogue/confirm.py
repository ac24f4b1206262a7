"""Confirmation of what the understanding layers only half-heard (`Facts.suspected()`), in one short question
in the caller's language ("So the face looks droopy on one side, is that right?").

Policy: a suspected finding that would fire a red flag is confirmed AT ONCE, before anything else; "yes" fires
it, "no" records it absent, "not sure" or no answer counts as present (when unsure, escalate): a suspected red
flag is never dropped. Other suspicions are confirmed before the disposition; "not sure" leaves them unstated.
Wording per finding: prompts/<lang>/confirm.yaml (`lay`), with a quote of the caller's words as fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field

from dialogue.engine import red_flags
from dialogue.facts import Facts
from dialogue.knowledge import LANGS, PROMPTS_DIR, Knowledge, check_ids, read_yaml, validated
from dialogue.protocols import URGENCY, ProtocolError, StrictModel

TEXTS = (
    "confirm",
    "confirm_retry",
    "confirm_quote",
    "readback_number",
    "readback_negation",
    "readback_words",
    "readback_again",
    "ask_number_again",
    "silence_escalated",
    "hold_for_nurse",
    "hold_reprompt",
)


class ConfirmText(StrictModel):
    texts: dict[str, str]
    numbers: dict[str, str] = Field(default_factory=dict)
    lay: dict[str, str] = Field(default_factory=dict)


@lru_cache(maxsize=4)
def confirm_text(root: str = str(PROMPTS_DIR)) -> dict[str, ConfirmText]:
    from dialogue.knowledge import knowledge

    known = knowledge(root).known_findings()
    out: dict[str, ConfirmText] = {}
    for lang in LANGS:
        path = Path(root) / lang / "confirm.yaml"
        ct: ConfirmText = validated(ConfirmText, path, read_yaml(path))
        for key in TEXTS:
            if key not in ct.texts:
                raise ProtocolError(f"{path}: texts.{key}: missing")
        check_ids(path, "lay", set(ct.lay), known)
        out[lang] = ct
    return out


def trial(facts: Facts) -> Facts:
    """A copy of the facts to try a hypothesis on, leaving the call's own untouched."""
    t = Facts(facts.lang)
    t.findings = dict(facts.findings)
    t.slots = dict(facts.slots)
    return t


def would_fire(facts: Facts, kn: Knowledge, fid: str, mode: str = "triage", with_: tuple[str, ...] = ()) -> bool:
    """Would this finding, if present (together with `with_`), raise a red flag that is not raised already,
    and one that this finding takes part in?"""
    facts.derive(kn.catalog)
    now = {f.id for f in red_flags(facts, kn, mode)}
    t = trial(facts)
    for f in (fid, *with_):
        t.set_finding(f, True, 0, "", "")
    t.derive(kn.catalog)
    fired = {f.id for f in red_flags(t, kn, mode)} - now
    facts.derive(kn.catalog)
    if not with_:
        return bool(fired)
    return any(fid in rf.finding_ids() for rf in kn.red_flags if rf.id in fired)


def suspect_pictures(facts: Facts, kn: Knowledge, mode: str = "triage", turn: int = 0) -> None:
    """Suspect the key finding of every red flag whose picture (prompts/red_flags.yaml `pictures`) the facts
    show and whose key finding the caller has not settled either way."""
    facts.derive(kn.catalog)
    said = facts.utterances[-1] if facts.utterances else ""
    for rf in kn.red_flags:
        for pic in rf.pictures if mode in rf.modes else ():
            if pic.ask not in facts.findings and facts.suspicion(pic.ask) is None and facts.holds(pic.when):
                facts.suspect(pic.ask, turn, said, "", 0.5, source=f"picture:{rf.id}")


def red_flag_suspicions(facts: Facts, kn: Knowledge, mode: str = "triage") -> list[str]:
    """Suspected findings that would raise a red flag, alone or with the other suspicions ("chest pain" and
    "spreading to the arm" both half-heard): what a call confirms at once (also for `carecall eval`)."""
    open_ = tuple(facts.suspected())
    return [f for f in open_ if would_fire(facts, kn, f, mode) or would_fire(facts, kn, f, mode, open_)]


@dataclass(frozen=True, slots=True)
class ConfirmAsk:
    finding: str
    red_flag: bool
    text: str
    asked_turn: int


@dataclass
class Confirmer:
    """One call's confirmations: what was asked, the answer, and what it did."""

    lang: str
    kn: Knowledge
    mode: str = "triage"
    records: list[dict[str, Any]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    retried: bool = False

    def _open(self, facts: Facts) -> list[str]:
        return [f for f in facts.suspected() if f not in self.done]

    def _red(self, fid: str, facts: Facts) -> bool:
        others = tuple(self._open(facts))
        return would_fire(facts, self.kn, fid, self.mode) or would_fire(facts, self.kn, fid, self.mode, others)

    def next_red_flag(self, facts: Facts, turn: int) -> ConfirmAsk | None:
        suspect_pictures(facts, self.kn, self.mode, turn)
        for f in self._open(facts):
            if self._red(f, facts):
                return self._ask(f, True, facts, turn)
        return None

    def next_other(self, facts: Facts, turn: int) -> ConfirmAsk | None:
        """The next suspicion worth a question: a red flag, or one that would change what the triage does
        (raise the disposition, or give a complaint when none is recognised). One that would change nothing
        is left open in the record: a question that cannot change the advice is only a burden."""
        for f in self._open(facts):
            red = self._red(f, facts)
            if red or self._matters(f, facts):
                return self._ask(f, red, facts, turn)
        return None

    def _matters(self, fid: str, facts: Facts) -> bool:
        from dialogue.engine import assess

        now = assess(facts, self.kn, self.mode)
        t = trial(facts)
        t.set_finding(fid, True, 0, "", "")
        then = assess(t, self.kn, self.mode)
        facts.derive(self.kn.catalog)
        if URGENCY[then.disposition] > URGENCY[now.disposition]:
            return True
        return not now.complaints and bool(then.complaints)

    def _ask(self, fid: str, red: bool, facts: Facts, turn: int) -> ConfirmAsk:
        return ConfirmAsk(fid, red, self.question(fid, facts), turn)

    def question(self, fid: str, facts: Facts, *, retry: bool = False) -> str:
        ct = confirm_text()[self.lang]
        lay = ct.lay.get(fid)
        if lay is None:
            s = facts.suspicion(fid)
            span = (s.span or s.text) if s else fid
            return ct.texts["confirm_quote"].format(span=span.strip())
        return ct.texts["confirm_retry" if retry else "confirm"].format(lay=lay)

    def take(self, ask: ConfirmAsk, answer: str | None, said: bool | None, text: str, turn: int, facts: Facts) -> bool:
        """Apply the caller's answer (`said`: the finding in their own words, present or denied, if they said
        it). Returns False (once) when a red-flag confirmation should be asked again in other words."""
        fid = ask.finding
        s = facts.suspicion(fid)
        span = s.span if s else ""
        if said is not None:
            outcome, present = ("confirmed" if said else "denied"), said
        elif answer == "yes":
            outcome, present = "confirmed", True
        elif answer == "no":
            outcome, present = "denied", False
        elif answer is None and not self.retried:
            self.retried = True
            return False
        elif ask.red_flag:
            outcome, present = "unsure: treated as present", True
        else:
            outcome, present = "unsure: left unstated", None
        self.retried = False
        if present is not None and fid not in facts.findings:
            source = "assumed" if outcome.startswith("unsure") else "confirmed"
            facts.set_finding(fid, present, turn, text, span, source=source)
        self.done.add(fid)
        self.records.append(
            {
                "finding": fid,
                "red_flag": ask.red_flag,
                "question": ask.text,
                "asked_turn": ask.asked_turn,
                "answer": answer if answer is not None else ("said" if said is not None else "unclear"),
                "answer_turn": turn,
                "outcome": outcome,
                "score": round(s.score, 3) if s else None,
            }
        )
        return True

    def no_answer(self, ask: ConfirmAsk, turn: int, facts: Facts) -> None:
        """The caller said nothing: a red flag counts as present; anything else stays unstated."""
        self.retried = True
        self.take(ask, "unknown", None, "", turn, facts)
        self.records[-1]["answer"] = "no answer"

    def suspected(self, facts: Facts) -> list[dict[str, Any]]:
        out = []
        for fid in {*facts.suspected(), *self.done}:
            s = facts.suspicion(fid)
            if s is None:
                continue
            rec = next((r for r in self.records if r["finding"] == fid), None)
            out.append({
                "finding": fid, "turn": s.turn, "span": s.span, "score": round(s.score, 3),
                "red_flag": rec["red_flag"] if rec else self._red(fid, facts),
                "status": rec["outcome"] if rec else "open",
            })
        return sorted(out, key=lambda d: (d["turn"], d["finding"]))
