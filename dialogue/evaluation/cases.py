"""Case files (JSONL, one case a line) for `carecall eval` and `carecall simulate`, validated with a
message that names the file, the line and the field, so a clinician can fix a case without Python.

A statement case: `{"id", "lang", "text", "gold"?, "gold3"?, "departments"?, "why"?}`.
A conversation case: `{"id", "lang", "opening", "truth": {...}, "phrasings"?, "gold"?, "gold3"?,
"departments"?, "red_flags"?, "why"?}` (the format is documented in docs/guides/evalkit.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dialogue.knowledge import Knowledge
from dialogue.slots import SLOTS
from voice.languages import languages

TO3 = {"emergency_ambulance": "em", "emergency": "em", "consultation_24": "ne", "consultation": "ne", "self_care": "sc"}
Gold5 = Literal["emergency_ambulance", "emergency", "consultation_24", "consultation", "self_care"]
Gold3 = Literal["em", "ne", "sc"]


class CaseError(ValueError):
    """A case file is malformed; the message names the file, the line and the field."""


class _Case(BaseModel):
    model_config = ConfigDict(extra="allow")  # free notes (source, why, register) are kept, not checked

    id: str = Field(min_length=1)
    lang: str
    gold: Gold5 | None = None
    gold3: Gold3 | None = None
    departments: list[str] = []

    @field_validator("lang")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in languages:
            raise ValueError(f"no language pack for {v!r} (one of {', '.join(languages)})")
        return v

    @model_validator(mode="after")
    def _gold_agrees(self) -> _Case:
        if self.gold and self.gold3 and TO3[self.gold] != self.gold3:
            raise ValueError(f"gold {self.gold} is {TO3[self.gold]}, not gold3 {self.gold3}")
        return self

    @property
    def gold3_or_derived(self) -> str | None:
        return self.gold3 or (TO3[self.gold] if self.gold else None)


class StatementCase(_Case):
    lang: str = "en"  # older statement files leave it out for English
    text: str = Field(min_length=1)


class Truth(BaseModel):
    """What is true of the simulated caller. Findings in neither list are governed by `rest`:
    "unknown" (the caller says "I don't know", the default) or "absent" (the caller says no)."""

    model_config = ConfigDict(extra="forbid")

    present: list[str] = []
    absent: list[str] = []
    unknown: list[str] = []
    rest: Literal["unknown", "absent"] = "unknown"
    age: float | None = Field(default=None, ge=0, le=120)  # years; 0.1 is about five weeks
    sex: Literal["f", "m"] | None = None
    pregnancy_weeks: float | None = Field(default=None, ge=1, le=45)
    durations: dict[str, float] | float | None = None  # hours: one figure, or per finding id ("main" too)
    numbers: dict[str, float] = {}  # any other slot: temp_c, pain_score, glucose_mmol, spo2...

    @field_validator("numbers")
    @classmethod
    def _slots(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(SLOTS))
        if bad:
            raise ValueError(f"unknown number(s) {', '.join(bad)} (known: {', '.join(SLOTS)})")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> Truth:
        both = (set(self.present) & set(self.absent)) | (set(self.present) & set(self.unknown))
        if both:
            raise ValueError(f"finding(s) both present and absent/unknown: {', '.join(sorted(both))}")
        return self

    def slot_values(self) -> dict[str, float]:
        out = dict(self.numbers)
        if self.age is not None:
            out["age_years"] = self.age
        if self.pregnancy_weeks is not None:
            out["pregnancy_weeks"] = self.pregnancy_weeks
        if isinstance(self.durations, int | float):
            out["duration_hours"] = float(self.durations)
        elif self.durations:
            out["duration_hours"] = float(self.durations.get("main", next(iter(self.durations.values()))))
        return out


class ConversationCase(_Case):
    opening: str = Field(min_length=1)
    truth: Truth
    phrasings: dict[str, str | list[str]] = {}
    red_flags: list[str] | None = None  # expected red flags; default: those the truth itself meets

    def phrasing(self, fid: str) -> list[str]:
        p = self.phrasings.get(fid, [])
        return [p] if isinstance(p, str) else list(p)


def read_jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CaseError(f"{path}: cannot read: {e}") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CaseError(f"{path}:{i}: not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise CaseError(f"{path}:{i}: a case must be a JSON object")
        rows.append((i, obj))
    if not rows:
        raise CaseError(f"{path}: no cases")
    return rows


def _validate(model: type[_Case], path: Path, line: int, obj: dict[str, object]) -> _Case:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        where = obj.get("id", "?")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(case)'}: {err['msg']}" for err in e.errors()[:4]
        )
        raise CaseError(f"{path}:{line} (case {where}): {problems}") from None


def _check_ids(path: Path, line: int, case: _Case, kn: Knowledge) -> None:
    depts = set(kn.departments["departments"])
    bad = sorted(set(case.departments) - depts)
    if bad:
        raise CaseError(f"{path}:{line} (case {case.id}): departments: unknown {', '.join(bad)}")
    if isinstance(case, ConversationCase):
        t = case.truth
        known = kn.known_findings()
        named = set(t.present) | set(t.absent) | set(t.unknown) | set(case.phrasings)
        if isinstance(t.durations, dict):
            named |= set(t.durations) - {"main"}
        unknown = sorted(named - known)
        if unknown:
            raise CaseError(
                f"{path}:{line} (case {case.id}): truth: unknown finding(s) {', '.join(unknown)} "
                "(ids are in prompts/findings.yaml)"
            )
        flags = {rf.id for rf in kn.red_flags}
        if case.red_flags and set(case.red_flags) - flags:
            raise CaseError(
                f"{path}:{line} (case {case.id}): red_flags: unknown {', '.join(sorted(set(case.red_flags) - flags))}"
            )


def load_cases(path: Path, kind: Literal["statement", "conversation"], kn: Knowledge) -> list[_Case]:
    model: type[_Case] = StatementCase if kind == "statement" else ConversationCase
    cases: list[_Case] = []
    seen: set[str] = set()
    rows = read_jsonl(path)
    if kind == "conversation" and not any("truth" in obj for _, obj in rows):
        raise CaseError(f"{path}: no conversation cases (a conversation case has an opening and a truth)")
    for line, obj in rows:
        if kind == "statement" and "text" not in obj and "opening" in obj:
            obj = {**obj, "text": obj["opening"]}  # a conversation case's opening is a statement too
        case = _validate(model, path, line, obj)
        _check_ids(path, line, case, kn)
        if case.id in seen:
            raise CaseError(f"{path}:{line}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    return cases

