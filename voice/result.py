"""A call's structured result, shared by triage and follow-up: what the dialogue produces
(`DialogueManager.result()`), the call loop carries (`CallEnded.result`, `Outcome`) and the record,
exports and console read, field by field. Standard library only: `dialogue/`, `records/`,
`telephony/` and `web/` all import it.

`CallResult.to_json()` is the stored form (`calls.result`, the client's `ended` message): the same
keys the dialogues wrote before this type existed, so rows written by older versions read back with
`CallResult.from_json()` and still display. `from_json` never raises on a malformed row: a field of
the wrong type reads as its default (one field lost, never a call): the lenient readers are
`voice.result_json`'s; this module says which key holds which field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from voice.result_json import (
    JsonObject,
    as_list,
    as_mapping,
    bool_or_none,
    dicts,
    int_or_none,
    is_number,
    nonempty_str,
    plain,
    read_part,
    read_parts,
    red_flag,
    strs,
)

Mode = Literal["triage", "followup"]
AnswerValue = bool | float | str | None


# --- parts ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Evidence:
    """The caller's words a finding rests on: the turn (-1: the discharge record or a key press), the
    whole utterance and the span that said it."""

    turn: int | None
    text: str = ""
    span: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    present: bool
    source: str = ""  # rules | answer | llm | assumed | derived | record | ...
    evidence: Evidence | None = None  # None: derived from other findings, or a stored row without it


@dataclass(frozen=True, slots=True)
class Complaint:
    """One complaint protocol the call touched and the disposition it gave on its own."""

    protocol: str
    disposition: str


@dataclass(frozen=True, slots=True)
class Sbar:
    """The nurse's handover, in the call's language. `text` is the four parts joined ("S: ...")."""

    situation: str
    background: str
    assessment: str
    recommendation: str
    text: str = ""

    @property
    def parts(self) -> dict[str, str]:
        return {
            "situation": self.situation,
            "background": self.background,
            "assessment": self.assessment,
            "recommendation": self.recommendation,
        }


@dataclass(frozen=True, slots=True)
class Suspicion:
    """A half-heard finding (dialogue.confirm): confirmed with the caller, never dropped."""

    finding: str
    turn: int | None
    span: str
    score: float
    red_flag: bool
    status: str = "open"  # open | confirmed | denied | unsure: ...


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A suspicion put to the caller in one short question, and what came of it."""

    finding: str
    red_flag: bool
    question: str
    asked_turn: int | None
    answer: str
    answer_turn: int | None
    outcome: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ReadBack:
    """A critical number or a red-flag denial read back to the caller (dialogue.readback)."""

    kind: str
    what: str
    question: str
    asked_turn: int | None
    answer: str
    answer_turn: int | None
    outcome: str


@dataclass(frozen=True, slots=True)
class ScreenAnswer:
    """One life-threat item of the emergency screen asked before a non-urgent disposition."""

    item: str
    question: str  # the kind of question put (bundle | single | ...)
    asked_turn: int | None
    answer_turn: int | None
    reason: str
    answer: str


@dataclass(frozen=True, slots=True)
class LlmDisagreement:
    """Where the LLM's reading of a turn differed from the rules' (finding ids only, no caller words)."""

    rules_only: tuple[str, ...] = ()
    llm_only: tuple[str, ...] = ()
    conflict: tuple[str, ...] = ()
    red_flag_related: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    """A follow-up questionnaire answer: `answer` is how it was read (yes | no | unknown | free), `value`
    what is stored (True/False, a number, the caller's words); `alarm` flags the call for a nurse."""

    question: str
    section: str
    answer: str | None
    value: AnswerValue
    turn: int | None
    text: str
    alarm: bool = False


@dataclass(frozen=True, slots=True)
class TakeoverStep:
    """A nurse took the call over, handed it back or ended it (voice.takeover), seconds into the call."""

    event: str
    by: str
    at_s: float
    why: str | None = None  # a hand-back the nurse did not ask for (her connection ended)


# --- the result -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Progress:
    """The state so far, sent while the call runs (before each question): enough for the widget's
    card and the console's live view; the full `CallResult` comes with the end or an escalation."""

    mode: Mode
    disposition: str | None = None
    department: str = ""
    chief_complaint: str | None = None
    red_flags: tuple[str, ...] = ()
    chief_complaint_name: str = ""  # in the call's language, as `CallResult.chief_complaint_name`

    def to_json(self) -> JsonObject:
        return plain(self)


@dataclass(frozen=True, slots=True)
class CallResult:
    mode: Mode
    call_id: str = ""
    language: str = ""
    end_reason: str | None = None  # None: the call had not ended when this was taken
    # what the caller has and where they should go (triage; follow-up: the discharging department)
    chief_complaint: str | None = None
    chief_complaint_name: str = ""
    disposition: str | None = None  # the five-level scale; follow-up calls do not give one
    department: str = ""
    department_name: str = ""
    complaints: tuple[Complaint, ...] = ()
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)  # slot → value (temp_c, pain_score, ...)
    red_flags: tuple[str, ...] = ()
    summary: Sbar | None = None
    # what was done
    actions: tuple[str, ...] = ()  # in the call's language, as the SBAR recommendation lists them
    escalated: bool = False
    escalation_level: str | None = None
    transferred: bool = False
    held_for_nurse: bool = False
    takeovers: tuple[TakeoverStep, ...] = ()
    # how triage got there
    questions_asked: tuple[str, ...] = ()  # "<protocol>.<question>"
    questions_total: int = 0
    screen: tuple[ScreenAnswer, ...] = ()
    screen_questions: int = 0
    suspected: tuple[Suspicion, ...] = ()
    confirmations: tuple[Confirmation, ...] = ()
    readbacks: tuple[ReadBack, ...] = ()
    llm_disagreements: tuple[LlmDisagreement, ...] = ()
    # the follow-up questionnaire
    identity_confirmed: bool | None = None
    consent: bool | None = None
    answers: tuple[Answer, ...] = ()
    alarms: tuple[str, ...] = ()  # question ids whose answers flagged the call
    complete: bool = False

    def finding(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)

    def answer(self, question_id: str) -> Answer | None:
        return next((a for a in self.answers if a.question == question_id), None)

    # --- the stored form ------------------------------------------------------------------------
    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "mode": self.mode,
            "call_id": self.call_id,
            "language": self.language,
            "end_reason": self.end_reason,
            "department": self.department,
            "department_name": self.department_name,
            "red_flags": list(self.red_flags),
            "findings": [_finding_json(f) for f in self.findings],
            "numbers": dict(self.numbers),
            "summary": plain(self.summary) if self.summary else None,
            "action_taken": list(self.actions),
            "escalated": self.escalated,
            "escalation_level": self.escalation_level,
            "transferred": self.transferred,
            "held_for_nurse": self.held_for_nurse,
        }
        if self.mode == "triage":
            out |= {
                "disposition": self.disposition,
                "chief_complaint": self.chief_complaint,
                "chief_complaint_name": self.chief_complaint_name,
                "complaints": [plain(c) for c in self.complaints],
                "reasons": list(self.reasons),
                "questions_asked": list(self.questions_asked),
                "questions_total": self.questions_total,
                "screen": [plain(s) for s in self.screen],
                "screen_questions": self.screen_questions,
                "suspected": [plain(s) for s in self.suspected],
                "confirmations": [plain(c) for c in self.confirmations],
                "readbacks": [plain(r) for r in self.readbacks],
                "llm_disagreements": [plain(d) for d in self.llm_disagreements],
            }
        else:
            out |= {
                "identity_confirmed": self.identity_confirmed,
                "consent": self.consent,
                "outcomes": {a.question: _answer_json(a) for a in self.answers},
                "alarms": list(self.alarms),
                "complete": self.complete,
            }
        if self.takeovers:
            out["takeovers"] = [{k: v for k, v in plain(t).items() if v is not None} for t in self.takeovers]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, *, mode: str | None = None) -> CallResult:
        """A stored result (any version this project wrote; `{}` or None for a call cut off before
        the end). `mode`: the call's, when the row does not say."""
        d: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        m = (nonempty_str(d.get("mode")) or mode
             or ("followup" if "outcomes" in d or "identity_confirmed" in d else "triage"))
        return cls(
            mode=cast(Mode, m if m in ("triage", "followup") else "triage"),
            call_id=nonempty_str(d.get("call_id")) or "",
            language=nonempty_str(d.get("language")) or "",
            end_reason=nonempty_str(d.get("end_reason")),
            chief_complaint=nonempty_str(d.get("chief_complaint")),
            chief_complaint_name=nonempty_str(d.get("chief_complaint_name")) or "",
            disposition=nonempty_str(d.get("disposition")),
            department=nonempty_str(d.get("department")) or "",
            department_name=nonempty_str(d.get("department_name")) or "",
            complaints=tuple(c for c in read_parts(Complaint, d.get("complaints")) if c.protocol),
            reasons=strs(d.get("reasons")),
            findings=tuple(f for f in map(_finding, dicts(d.get("findings"))) if f is not None),
            numbers={str(k): float(v) for k, v in as_mapping(d.get("numbers")).items() if is_number(v)},
            red_flags=tuple(red_flag(r) for r in as_list(d.get("red_flags")) if red_flag(r)),
            summary=_sbar(d.get("summary")),
            actions=strs(d.get("action_taken")),
            escalated=bool(d.get("escalated")),
            escalation_level=nonempty_str(d.get("escalation_level")),
            transferred=bool(d.get("transferred")),
            held_for_nurse=bool(d.get("held_for_nurse")),
            takeovers=read_parts(TakeoverStep, d.get("takeovers")),
            questions_asked=strs(d.get("questions_asked")),
            questions_total=int_or_none(d.get("questions_total")) or 0,
            screen=read_parts(ScreenAnswer, d.get("screen")),
            screen_questions=int_or_none(d.get("screen_questions")) or 0,
            suspected=read_parts(Suspicion, d.get("suspected")),
            confirmations=read_parts(Confirmation, d.get("confirmations")),
            readbacks=read_parts(ReadBack, d.get("readbacks")),
            llm_disagreements=read_parts(LlmDisagreement, d.get("llm_disagreements")),
            identity_confirmed=bool_or_none(d.get("identity_confirmed")),
            consent=bool_or_none(d.get("consent")),
            answers=tuple(
                _answer(str(q), a) for q, a in as_mapping(d.get("outcomes")).items() if isinstance(a, Mapping)
            ),
            alarms=strs(d.get("alarms")),
            complete=bool(d.get("complete")),
        )


# --- the parts' stored form ------------------------------------------------------------------------
def _finding_json(f: Finding) -> JsonObject:
    out: JsonObject = {"id": f.id, "present": f.present, "source": f.source}
    if f.evidence is not None:  # a derived finding has none: the key is left out, as the dialogues always wrote
        out["evidence"] = plain(f.evidence)
    return out


def _answer_json(a: Answer) -> JsonObject:
    return {k: v for k, v in plain(a).items() if k != "question"}  # the question is the key of `outcomes`


def _finding(f: Mapping[str, Any]) -> Finding | None:
    fid = f.get("id")
    if not isinstance(fid, str) or not fid:
        return None
    ev = f.get("evidence")
    evidence = read_part(Evidence, ev) if isinstance(ev, Mapping) else None
    present = f.get("present")
    return Finding(fid, present if isinstance(present, bool) else True, str(f.get("source") or ""), evidence)


def _sbar(v: Any) -> Sbar | None:
    if isinstance(v, str) and v:
        return Sbar("", "", "", "", text=v)
    if not isinstance(v, Mapping):
        return None
    return read_part(Sbar, v)


def _answer(question: str, a: Mapping[str, Any]) -> Answer:
    value = a.get("value")
    if not isinstance(value, bool | int | float | str):
        value = None
    elif is_number(value):
        value = float(value)
    return Answer(
        question=question,
        section=str(a.get("section") or ""),
        answer=nonempty_str(a.get("answer")),
        value=value,
        turn=int_or_none(a.get("turn")),
        text=str(a.get("text") or ""),
        alarm=bool(a.get("alarm")),
    )


__all__ = [
    "Answer", "AnswerValue", "CallResult", "Complaint", "Confirmation", "Evidence", "Finding", "LlmDisagreement",
    "Mode", "Progress", "ReadBack", "Sbar", "ScreenAnswer", "Suspicion", "TakeoverStep",
]  # fmt: skip
