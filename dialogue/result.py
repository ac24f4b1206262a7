"""A triage's `voice.result.CallResult`: what the CLI prints, the call record stores and the nurse reads.
`assessed` gives the parts a single statement already has (`triage_text`); `TriageDialogue.result()` adds
the call's SBAR, actions and checks with `dataclasses.replace` (the checks' records read with
`voice.result_json.read_parts`)."""

from __future__ import annotations

from dialogue.engine import Assessment
from dialogue.facts import Facts
from dialogue.knowledge import Knowledge
from voice.result import CallResult, Complaint, Suspicion


def assessed(lang: str, facts: Facts, a: Assessment, kn: Knowledge) -> CallResult:
    """What the facts and their assessment say: disposition, department, red flags, findings, numbers."""
    from dialogue.confirm import would_fire

    texts = kn.protocol_text[lang]
    suspected = []
    for fid in facts.suspected():
        s = facts.suspicion(fid)
        assert s is not None
        suspected.append(Suspicion(fid, s.turn, s.span, round(s.score, 3), would_fire(facts, kn, fid)))
    return CallResult(
        mode="triage",
        language=lang,
        disposition=a.disposition,
        department=a.department,
        red_flags=tuple(f.id for f in a.red_flags),
        findings=facts.evidence(),
        chief_complaint=a.chief_complaint,
        complaints=tuple(Complaint(pid, d) for pid, d in a.complaints),
        numbers={k: v.value for k, v in facts.slots.items()},
        reasons=tuple(a.reasons),
        department_name=kn.phrases[lang].departments.get(a.department, a.department),
        chief_complaint_name=texts[a.chief_complaint].name if a.chief_complaint else "",
        suspected=tuple(suspected),
    )

