"""`carecall eval`: single-statement triage of each case, scored (accuracy, under-triage, department,
red-flag confirmations the call would ask)."""

from __future__ import annotations

from dialogue.engine import red_flags
from dialogue.evaluation.cases import StatementCase
from dialogue.evaluation.metrics import Row
from dialogue.facts import Facts
from dialogue.knowledge import Knowledge, knowledge
from dialogue.triage import triage_text
from voice.result import CallResult


def suspected_ids(result: CallResult) -> list[str]:
    """The findings a result marks as only suspected (to be confirmed with the caller)."""
    return [s.finding for s in result.suspected]


def would_confirm_red_flag(result: CallResult, kn: Knowledge) -> bool:
    """True when confirming the result's suspected findings would raise a red flag it has not raised:
    the call would ask a red-flag confirmation question before any disposition."""
    suspected = suspected_ids(result)
    if not suspected:
        return False
    fired = set(result.red_flags)
    facts = Facts()
    for f in result.findings:
        if f.source != "derived":
            facts.set_finding(f.id, f.present, 0, "", "")
    for slot, v in result.numbers.items():
        facts.set_slot(slot, float(v), 0, "", "")
    for fid in suspected:
        facts.set_finding(fid, True, 0, "", "")
    facts.derive(kn.catalog)
    return any(f.id not in fired for f in red_flags(facts, kn, "triage"))


def evaluate_statements(cases: list[StatementCase], kn: Knowledge | None = None) -> list[Row]:
    kn = kn or knowledge()
    rows = []
    for c in cases:
        r = triage_text(c.text, c.lang)
        rows.append(
            Row(
                id=c.id,
                lang=c.lang,
                pred=r.disposition,
                department=r.department,
                gold=c.gold,
                gold3=c.gold3_or_derived,
                departments=list(c.departments),
                red_flags=list(r.red_flags),
                confirmation_asked=would_confirm_red_flag(r, kn),
            )
        )
    return rows
