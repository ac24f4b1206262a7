"""A call's `voice.result.CallResult` as record rows: its findings with the caller's words and turn,
questionnaire answers and SBAR (the complaint, disposition, department and red flags the recorder reads
off the result itself). The result is typed, so nothing here guesses keys; a stored row of an older version is
read with `CallResult.from_json` first."""

from __future__ import annotations

from dataclasses import dataclass, field

from voice.result import AnswerValue, CallResult, Sbar


@dataclass(frozen=True, slots=True)
class FindingRow:
    name: str
    value: str  # yes | no
    evidence: str | None
    turn_idx: int | None


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    item: str
    value: str | None
    evidence: str | None
    concern: bool


@dataclass(frozen=True, slots=True)
class RecordRows:
    summary: dict[str, str] | None = None
    findings: list[FindingRow] = field(default_factory=list)
    outcomes: list[OutcomeRow] = field(default_factory=list)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def answer_text(value: AnswerValue) -> str | None:
    """A questionnaire answer's value as the record shows it (yes / no, 7, the caller's words)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return yes_no(value)
    return f"{value:g}"


def summary_row(s: Sbar | None) -> dict[str, str] | None:
    """The four SBAR parts; a summary without all four (an older row's text) keeps what it has."""
    if s is None:
        return None
    if all(s.parts.values()):
        return s.parts
    kept = {k: v for k, v in s.parts.items() if v}
    return {**kept, "text": s.text} if s.text else kept or None


def record_rows(result: CallResult) -> RecordRows:
    return RecordRows(
        summary=summary_row(result.summary),
        findings=[
            FindingRow(
                name=f.id,
                value=yes_no(f.present),
                evidence=f.evidence.text if f.evidence else None,
                turn_idx=f.evidence.turn if f.evidence else None,
            )
            for f in result.findings
        ],
        outcomes=[
            OutcomeRow(
                item=a.question,
                value=answer_text(a.value) if a.value is not None else a.answer,
                evidence=a.text or None,
                concern=a.alarm,
            )
            for a in result.answers
        ],
    )
