"""The structured outcome of a triage: what the CLI prints, the call record stores and the nurse reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dialogue.engine import Assessment
from dialogue.facts import Facts
from dialogue.protocols import Knowledge


@dataclass(slots=True)
class TriageResult:
    language: str
    disposition: str
    department: str
    red_flags: list[str]
    findings: list[dict[str, Any]]
    chief_complaint: str | None = None
    complaints: list[dict[str, str]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    department_name: str = ""
    chief_complaint_name: str = ""
    # half-heard findings to confirm (dialogue.confirm): {finding, turn, span, score, red_flag}
    suspected: list[dict[str, Any]] = field(default_factory=list)
    # what a call confirmed with the caller: {finding, question, answer, asked_turn, outcome, ...}
    confirmations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_result(lang: str, facts: Facts, a: Assessment, kn: Knowledge) -> TriageResult:
    from dialogue.confirm import would_fire

    texts = kn.protocol_text[lang]
    suspected = []
    for fid in facts.suspected():
        s = facts.suspicion(fid)
        assert s is not None
        red = would_fire(facts, kn, fid)
        suspected.append({"finding": fid, "turn": s.turn, "span": s.span, "score": round(s.score, 3), "red_flag": red})
    return TriageResult(
        language=lang,
        disposition=a.disposition,
        department=a.department,
        red_flags=[f.id for f in a.red_flags],
        findings=facts.evidence(),
        chief_complaint=a.chief_complaint,
        complaints=[{"protocol": pid, "disposition": d} for pid, d in a.complaints],
        numbers={k: v.value for k, v in facts.slots.items()},
        reasons=a.reasons,
        department_name=kn.phrases[lang].departments.get(a.department, a.department),
        chief_complaint_name=texts[a.chief_complaint].name if a.chief_complaint else "",
        suspected=suspected,
    )
