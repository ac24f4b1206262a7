"""Per-case rows and the summary that `carecall eval` and `carecall simulate` print (same keys)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from dialogue.evaluation.cases import TO3

LEVELS3 = ("em", "ne", "sc")


@dataclass(slots=True)
class Row:
    id: str
    lang: str
    pred: str  # the final disposition
    department: str
    gold: str | None
    gold3: str | None
    departments: list[str]
    red_flags: list[str]
    confirmation_asked: bool = False  # a red-flag confirmation was (or would be) asked
    questions: int | None = None  # conversations only: questions the caller answered
    expected_red_flags: list[str] = field(default_factory=list)
    end_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pred3(self) -> str:
        return TO3[self.pred]

    @property
    def ok3(self) -> bool | None:
        return None if self.gold3 is None else self.pred3 == self.gold3

    @property
    def ok5(self) -> bool | None:
        return None if self.gold is None else self.pred == self.gold

    @property
    def dept_ok(self) -> bool | None:
        return None if not self.departments else self.department in self.departments

    @property
    def under_triaged_emergency(self) -> bool:
        """Gold emergency and final disposition below emergency; for a single statement, also no red-flag
        confirmation asked (the call would go on to confirm it). A conversation has no such excuse: its
        confirmations were asked and answered, and only the final disposition counts."""
        if self.gold3 != "em" or self.pred3 == "em":
            return False
        return self.questions is not None or not self.confirmation_asked


def _frac(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def percentile(values: list[int], q: float) -> float | None:
    """Nearest-rank percentile (p95 of 20 calls is the 19th smallest): no interpolation."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, -(-int(q * len(s) * 100) // 100))  # ceil(q * n) without float surprises
    return float(s[min(rank, len(s)) - 1])


def summarise(rows: list[Row]) -> dict[str, Any]:
    with3 = [r for r in rows if r.ok3 is not None]
    with5 = [r for r in rows if r.ok5 is not None]
    non_em = [r for r in with3 if r.gold3 != "em"]
    summary: dict[str, Any] = {
        "n": len(rows),
        "accuracy3": _frac([bool(r.ok3) for r in with3]),
        "accuracy5": _frac([bool(r.ok5) for r in with5]),
        "under_triaged_emergencies": sum(r.under_triaged_emergency for r in rows),
        "over_triaged": sum(1 for r in with3 if LEVELS3.index(r.pred3) < LEVELS3.index(str(r.gold3))),
        "accuracy3_by_gold": {k: _frac([bool(r.ok3) for r in with3 if r.gold3 == k]) for k in LEVELS3},
        "confirmation_asked": sum(r.confirmation_asked for r in rows),
        "confirmation_on_non_emergencies": _frac([r.confirmation_asked for r in non_em]),
        "department_accuracy": _frac([bool(r.dept_ok) for r in rows if r.dept_ok is not None]),
        "department_n": sum(1 for r in rows if r.dept_ok is not None),
    }
    by_lang = {}
    for lang in sorted({r.lang for r in rows}):
        sub = [r for r in with3 if r.lang == lang]
        by_lang[lang] = {"n": len(sub), "accuracy3": _frac([bool(r.ok3) for r in sub]),
                         "under_triaged_emergencies": sum(r.under_triaged_emergency for r in sub)}
    summary["by_lang"] = by_lang
    return summary


def summarise_conversations(rows: list[Row]) -> dict[str, Any]:
    """`summarise` plus questions per call (median, p95) and recall per expected red flag."""
    summary = summarise(rows)
    q = [r.questions for r in rows if r.questions is not None]
    summary["questions_median"] = float(statistics.median(q)) if q else None
    summary["questions_p95"] = percentile(q, 0.95)
    recall: dict[str, dict[str, Any]] = {}
    for flag in sorted({f for r in rows for f in r.expected_red_flags}):
        cases = [r for r in rows if flag in r.expected_red_flags]
        hit = [flag in r.red_flags for r in cases]
        missed = [r.id for r in cases if flag not in r.red_flags]
        recall[flag] = {"n": len(cases), "recall": _frac(hit), "missed": missed}
    summary["red_flag_recall"] = recall
    return summary
