"""`carecall eval`: single-statement triage of each case, scored (accuracy, under-triage, department,
red-flag confirmations the call would ask)."""

from __future__ import annotations

from typing import Any

from dialogue.engine import red_flags
from dialogue.evaluation.cases import StatementCase
from dialogue.evaluation.metrics import Row
from dialogue.facts import Facts
from dialogue.protocols import Knowledge, knowledge
from dialogue.triage import triage_text


def suspected_ids(result: Any) -> list[str]:
    """The findings a result marks as only suspected (to be confirmed with the caller), if it has any:
    ids, or records with an `id`/`finding`. A result without the field (the engine before the
    confirmation work) suspects nothing."""
    raw = result.get("suspected") if isinstance(result, dict) else getattr(result, "suspected", None)
    out: list[str] = []
    for s in raw or []:
        if isinstance(s, str):
            out.append(s)
        elif isinstance(s, dict):
            fid = s.get("id") or s.get("finding")
            if fid:
                out.append(str(fid))
        else:
            fid = getattr(s, "finding", None) or getattr(s, "id", None)
            if fid:
                out.append(str(fid))
    return out


def would_confirm_red_flag(result: Any, kn: Knowledge) -> bool:
    """True when confirming the result's suspected findings would raise a red flag it has not raised:
    the call would ask a red-flag confirmation question before any disposition."""
    suspected = suspected_ids(result)
    if not suspected:
        return False
    findings = result["findings"] if isinstance(result, dict) else result.findings
    numbers = result["numbers"] if isinstance(result, dict) else result.numbers
    fired = set(result["red_flags"] if isinstance(result, dict) else result.red_flags)
    facts = Facts()
    for f in findings:
        if f.get("source") != "derived":
            facts.set_finding(str(f["id"]), bool(f["present"]), 0, "", "")
    for slot, v in (numbers or {}).items():
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
