"""What a QA pass produces: per check a result (pass / warn / fail, or na where the check does not
apply to this call) with its evidence (turn and words), and the call's overall result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Result = Literal["pass", "warn", "fail", "na"]
RESULTS: tuple[str, ...] = ("pass", "warn", "fail")
_SEVERITY = {"na": 0, "pass": 1, "warn": 2, "fail": 3}
REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Evidence:
    turn: int | None  # the turn's index in the transcript; None for the call as a whole
    words: str  # what was said (or, for a missing thing, what was expected)

    def to_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "words": self.words}


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    result: Result
    summary: str
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "result": self.result,
            "summary": self.summary,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class QaReport:
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def result(self) -> Result:
        """The worst result of the checks that apply (a call where nothing applies passes)."""
        worst = max((c.result for c in self.checks), key=lambda r: _SEVERITY[r], default="pass")
        return "pass" if worst == "na" else worst

    def get(self, check: str) -> CheckResult | None:
        return next((c for c in self.checks if c.check == check), None)

    def to_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "result": self.result, "checks": [c.to_dict() for c in self.checks]}


def worst(*results: Result) -> Result:
    return max(results, key=lambda r: _SEVERITY[r], default="na")
