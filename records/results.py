"""Reading a dialogue's structured result (`DialogueManager.result()`) into record rows.

The dialogue brain owns the result's shape; this reader is tolerant on purpose so that a renamed
key loses one field, never a call. Expected (all optional):

    {"chief_complaint": str, "chief_complaint_name": str, "disposition": str | {"level": str},
     "department": str,
     "findings": [{"id"|"name"|"slot": str, "value": any | "present": bool,
                   "evidence": str | {"text": str, "turn": int}, "turn_index"|"turn": int}] | {name: value},
     "red_flags": [str | {"flag"|"name"|"id": str, "reason": str, "turn_index": int}],
     "summary"|"sbar": {"situation", "background", "assessment", "recommendation"} | str,
     "outcomes"|"answers"|"questionnaire": [{"item"|"name"|"question": str, "value"|"answer": any,
                   "evidence"|"text": str, "concern"|"alarm": bool}] | {item: {...same} | value}}

(dialogue/triage.py and dialogue/followup.py produce the `id`/`present`/`evidence{turn,text}` and
`outcomes{question: {answer, value, text, turn, alarm}}` forms.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SBAR_KEYS = ("situation", "background", "assessment", "recommendation")


@dataclass
class FindingRow:
    name: str
    value: str | None
    evidence: str | None
    turn_idx: int | None


@dataclass
class RedFlagRow:
    flag: str
    reason: str | None = None
    level: str | None = None
    turn_idx: int | None = None


@dataclass
class OutcomeRow:
    item: str
    value: str | None
    evidence: str | None
    concern: bool


@dataclass
class ParsedResult:
    chief_complaint: str | None = None
    disposition: str | None = None
    department: str | None = None
    summary: dict[str, Any] | None = None
    findings: list[FindingRow] = field(default_factory=list)
    red_flags: list[RedFlagRow] = field(default_factory=list)
    outcomes: list[OutcomeRow] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _first(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def _evidence(d: dict[str, Any]) -> str | None:
    ev = _first(d, "evidence", "utterance", "quote", "source_text", "text")
    if isinstance(ev, dict):
        ev = _first(ev, "text", "utterance")
    return _text(ev)


def _turn(d: dict[str, Any]) -> int | None:
    ev = d.get("evidence")
    nested = _first(ev, "turn_index", "turn") if isinstance(ev, dict) else None
    return _int(_first(d, "turn_index", "turn", "turn_idx") if nested is None else nested)


def parse_disposition(value: Any) -> str | None:
    if isinstance(value, dict):
        value = _first(value, "level", "disposition", "code")
    return _text(value)


def parse_red_flags(value: Any) -> list[RedFlagRow]:
    rows: list[RedFlagRow] = []
    for item in value or ():
        if isinstance(item, dict):
            name = _text(_first(item, "flag", "name", "id", "label", "code")) or "red flag"
            rows.append(
                RedFlagRow(
                    flag=name,
                    reason=_text(_first(item, "reason", "description")) or _evidence(item),
                    level=_text(item.get("level")),
                    turn_idx=_turn(item),
                )
            )
        else:
            rows.append(RedFlagRow(flag=str(item)))
    return rows


def parse_summary(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if all(value.get(k) for k in SBAR_KEYS):  # the four parts; a joined "text" copy adds nothing
            return {k: _text(value[k]) for k in SBAR_KEYS}
        return {k: _text(v) for k, v in value.items()}
    return {"text": _text(value)}


def parse_result(result: dict[str, Any] | None) -> ParsedResult:
    result = result or {}
    parsed = ParsedResult(
        chief_complaint=_text(result.get("chief_complaint_name") or result.get("chief_complaint") or None),
        disposition=parse_disposition(result.get("disposition")),
        department=_text(_first(result, "department", "dept")),
        summary=parse_summary(_first(result, "summary", "sbar")),
        red_flags=parse_red_flags(result.get("red_flags")),
    )
    findings = result.get("findings") or []
    if isinstance(findings, dict):
        findings = [{"name": k, "value": v} for k, v in findings.items()]
    for f in findings:
        if not isinstance(f, dict):
            parsed.findings.append(FindingRow(name=str(f), value=None, evidence=None, turn_idx=None))
            continue
        parsed.findings.append(
            FindingRow(
                name=_text(_first(f, "name", "id", "slot", "key", "label", "finding")) or "finding",
                value=_text(f["value"] if f.get("value") is not None else f.get("present")),
                evidence=_evidence(f),
                turn_idx=_turn(f),
            )
        )
    outcomes = _first(result, "outcomes", "answers", "questionnaire") or []
    if isinstance(outcomes, dict):
        outcomes = [{"item": k, **v} if isinstance(v, dict) else {"item": k, "value": v} for k, v in outcomes.items()]
    for o in outcomes:
        if isinstance(o, dict):
            parsed.outcomes.append(
                OutcomeRow(
                    item=_text(_first(o, "item", "name", "question", "key")) or "item",
                    value=_text(_first(o, "value", "answer")),
                    evidence=_evidence(o),
                    concern=bool(_first(o, "concern", "alarm", "flag", "escalate")),
                )
            )
    return parsed
