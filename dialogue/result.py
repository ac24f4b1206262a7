"""A triage's `voice.result.CallResult`: what the CLI prints, the call record stores and the nurse reads.
`assessed` gives the parts a single statement already has (`triage_text`); `TriageDialogue.result()` adds
the call's SBAR, actions and checks with `dataclasses.replace`. The checks' records (screen, confirmations,
read-backs) are typed here, at the one place they leave the dialogue."""

from __future__ import annotations

from typing import Any

from dialogue.engine import Assessment
from dialogue.facts import Facts
from dialogue.protocols import Knowledge
from voice.result import CallResult, Complaint, Confirmation, ReadBack, ScreenAnswer, Suspicion


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


# --- the checks' records (dialogue.screen, dialogue.confirm, dialogue.readback write them as dicts) ---
def screen_answers(records: list[dict[str, Any]]) -> tuple[ScreenAnswer, ...]:
    return tuple(
        ScreenAnswer(r["item"], r["question"], r["asked_turn"], r["answer_turn"], r["reason"], r["answer"])
        for r in records
    )


def suspicions(records: list[dict[str, Any]]) -> tuple[Suspicion, ...]:
    return tuple(
        Suspicion(r["finding"], r["turn"], r["span"], r["score"], bool(r["red_flag"]), r["status"]) for r in records
    )


def confirmations(records: list[dict[str, Any]]) -> tuple[Confirmation, ...]:
    return tuple(
        Confirmation(
            finding=r["finding"],
            red_flag=bool(r["red_flag"]),
            question=r["question"],
            asked_turn=r["asked_turn"],
            answer=r["answer"],
            answer_turn=r["answer_turn"],
            outcome=r["outcome"],
            score=r.get("score"),
        )
        for r in records
    )


def readbacks(records: list[dict[str, Any]]) -> tuple[ReadBack, ...]:
    return tuple(
        ReadBack(r["kind"], r["what"], r["question"], r["asked_turn"], r["answer"], r["answer_turn"], r["outcome"])
        for r in records
    )
