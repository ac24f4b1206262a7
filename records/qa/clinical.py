"""QA checks on the clinical path: every critical protocol question asked or settled (`critical: true`
in prompts/protocols/*.yaml; follow-up: prompts/qa/checks.yaml), emergency advice delivered and heard
in full (from what the caller actually heard), and the disposition replayed through the engine."""

from __future__ import annotations

from dialogue.engine import assess
from dialogue.facts import Facts
from dialogue.knowledge import Knowledge
from dialogue.protocols import URGENCY
from records.qa.config import QaConfig
from records.qa.model import CheckResult, Evidence, Result, worst
from records.qa.view import CallView, excerpt, says
from voice.result import CallResult
from voice.result import Evidence as ResultEvidence

EMERGENCY_LEVELS = ("emergency_ambulance", "emergency")
_ENDED_EARLY = ("consent_declined", "identity_not_confirmed", "silence", "red_flag", "transferred", "taken_over")


def replay_facts(result: CallResult) -> Facts:
    """The facts the dialogue ended with, rebuilt from its result (findings with their turns, numbers)."""
    facts = Facts()
    for f in result.findings:
        if f.source == "derived":
            continue
        ev = f.evidence or ResultEvidence(0)
        facts.set_finding(f.id, f.present, ev.turn or 0, ev.text, ev.span, f.source or "rules")
    for slot, value in result.numbers.items():
        facts.set_slot(slot, value, 0, "", "")
    return facts


def _finding_evidence(result: CallResult, fid: str) -> Evidence | None:
    f = result.finding(fid)
    if f is None:
        return None
    ev = f.evidence or ResultEvidence(None)
    return Evidence(ev.turn, f"{fid} = {'yes' if f.present else 'no'}: {excerpt(ev.text)}")


def critical_questions(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    if not v.has_result:
        return CheckResult("critical_questions", "na", "no dialogue result")
    if v.mode == "followup":
        return _followup_critical(v, kn, cfg)
    complaints = [c.protocol for c in v.result.complaints]
    if not complaints:
        return CheckResult("critical_questions", "na", "no complaint protocol was triggered")
    facts = replay_facts(v.result)
    facts.derive(kn.catalog)
    asked = set(v.result.questions_asked)
    numbers = v.result.numbers
    escalated = v.disposition in EMERGENCY_LEVELS or bool(v.red_flags)
    ev: list[Evidence] = []
    missing: list[str] = []
    total = 0
    for pid in complaints:
        p = kn.protocols.get(pid)
        if p is None:
            continue
        texts = kn.protocol_text[v.lang].get(p.id)
        for q in p.questions:
            if not q.critical or (q.ask_if is not None and not facts.holds(q.ask_if)):
                continue
            total += 1
            key = f"{p.id}.{q.id}"
            template = texts.questions.get(q.id, key) if texts else key
            if key in asked:
                turn = next((t for t in v.bot() if says(t.text, template)), None)
                ev.append(Evidence(turn.idx if turn else None, f"asked: {excerpt(turn.heard if turn else template)}"))
            elif q.finding and q.finding in facts.findings:
                ev.append(_finding_evidence(v.result, q.finding) or Evidence(None, f"settled: {q.finding}"))
            elif q.slot and q.slot in numbers:
                ev.append(Evidence(None, f"settled: {q.slot} = {numbers[q.slot]}"))
            else:
                missing.append(key)
                ev.append(Evidence(None, f"NOT asked: {excerpt(template)}"))
    if total == 0:
        return CheckResult("critical_questions", "na", "the complaint protocols have no critical question")
    if not missing:
        return CheckResult(
            "critical_questions", "pass", f"all {total} critical question(s) asked or settled", tuple(ev)
        )
    if v.disposition == "emergency_ambulance":
        return CheckResult(
            "critical_questions", "pass",
            f"{len(missing)} of {total} critical question(s) moot: the most urgent disposition was given", tuple(ev),
        )  # fmt: skip
    if escalated or v.end_reason in _ENDED_EARLY:
        why = "the call was escalated" if escalated else f"the call ended early ({v.end_reason})"
        return CheckResult(
            "critical_questions", "warn", f"{len(missing)} of {total} critical question(s) not asked; {why}", tuple(ev)
        )
    return CheckResult(
        "critical_questions", "fail", f"{len(missing)} of {total} critical question(s) neither asked nor settled: "
        + ", ".join(missing), tuple(ev),
    )  # fmt: skip


def _followup_critical(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    if not v.result.identity_confirmed or v.result.consent is False:
        return CheckResult("critical_questions", "na", "the questionnaire was not reached")
    department = str(v.params.get("department") or v.result.department)
    facts = replay_facts(v.result)
    ev: list[Evidence] = []
    missing: list[str] = []
    wanted = [
        q for q in kn.questionnaire.questions
        if q.id in cfg.followup_critical and (not q.departments or department in q.departments)
    ]  # fmt: skip
    for q in wanted:
        o = v.result.answer(q.id)
        if o is not None:
            ev.append(Evidence(o.turn, f"{q.id}: {excerpt(o.text)}"))
        elif q.finding and q.finding in facts.findings:
            ev.append(_finding_evidence(v.result, q.finding) or Evidence(None, f"settled: {q.finding}"))
        else:
            missing.append(q.id)
            ev.append(Evidence(None, f"NOT asked: {excerpt(kn.followup_text[v.lang].questions.get(q.id, q.id))}"))
    if not wanted:
        return CheckResult("critical_questions", "na", "no critical follow-up question for this department")
    if not missing:
        return CheckResult("critical_questions", "pass", f"all {len(wanted)} screening question(s) answered", tuple(ev))
    result: Result = "warn" if v.end_reason in _ENDED_EARLY else "fail"
    return CheckResult(
        "critical_questions", result, f"screening question(s) not asked: {', '.join(missing)}", tuple(ev)
    )


def _advice_phrases(kn: Knowledge, lang: str, level: str) -> list[str]:
    ph = kn.phrases[lang]
    ambulance = [ph.texts["red_flag_ambulance"], ph.dispositions["emergency_ambulance"]]
    if level == "emergency_ambulance":
        return ambulance
    return [ph.texts["red_flag_emergency"], ph.dispositions["emergency"], *ambulance]


def _needed_level(v: CallView, kn: Knowledge) -> str | None:
    levels = [v.disposition] if v.disposition in EMERGENCY_LEVELS else []
    levels += [rf.level for rf in kn.red_flags if rf.id in v.red_flags]
    esc = v.result.escalation_level
    if esc in EMERGENCY_LEVELS:
        levels.append(esc)
    return max(levels, key=lambda d: URGENCY[d]) if levels else None


def emergency_advice(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """An emergency call must end with the emergency instruction heard in full, not only spoken."""
    level = _needed_level(v, kn)
    if level is None:
        return CheckResult("emergency_advice", "na", "no emergency disposition or red flag")
    phrases = _advice_phrases(kn, v.lang, level)
    spoken = [t for t in v.bot() if any(says(t.text, p) for p in phrases)]
    if not spoken:
        return CheckResult(
            "emergency_advice", "fail", f"the emergency instruction ({level}) was never given",
            (Evidence(None, f"expected: {excerpt(phrases[0])}"),),
        )  # fmt: skip
    heard = [t for t in spoken if any(says(t.heard, p) for p in phrases)]
    cut = [t for t in spoken if t not in heard]
    ev = tuple(Evidence(t.idx, f"heard in full: {excerpt(t.heard)}") for t in heard) + tuple(
        Evidence(t.idx, f"cut off, caller heard only: {excerpt(t.heard) or '(nothing)'}") for t in cut
    )
    ev = tuple(sorted(ev, key=lambda e: e.turn or 0))
    if not heard:
        return CheckResult(
            "emergency_advice", "fail", "the emergency instruction was interrupted and never heard in full", ev
        )
    if cut:
        return CheckResult("emergency_advice", "pass", "interrupted once, then heard in full", ev)
    return CheckResult("emergency_advice", "pass", "emergency instruction heard in full", ev)


def disposition(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """Replay the recorded findings through the protocol engine: the same red flags and disposition?"""
    if not v.result.findings and not v.result.numbers:
        if v.mode == "triage" and v.disposition and v.end_reason == "completed":
            return CheckResult("disposition", "warn", "a disposition without recorded findings to check it against")
        return CheckResult("disposition", "na", "no findings to replay")
    facts = replay_facts(v.result)
    replay = assess(facts, kn, mode=v.mode if v.mode in ("triage", "followup") else "triage")
    replay_flags = {f.id for f in replay.red_flags}
    recorded_flags = set(v.red_flags) | set(v.result.red_flags)
    ev: list[Evidence] = []
    result: Result = "pass"
    missed = sorted(replay_flags - recorded_flags)
    if missed:
        result = "fail"
        ev += [Evidence(None, f"red flag the findings raise but the call did not: {f}") for f in missed]
    if v.mode == "triage":
        said = v.disposition
        if said not in URGENCY:
            return CheckResult("disposition", "warn", "no disposition recorded", tuple(ev))
        ev.append(Evidence(None, f"recorded {said}; engine replay {replay.disposition}"))
        if URGENCY[said] < URGENCY[replay.disposition]:
            result = "fail"
            ev.append(Evidence(None, "under-triage: the findings call for " + replay.disposition))
        elif URGENCY[said] > URGENCY[replay.disposition]:
            result = worst(result, "warn")
            ev.append(Evidence(None, "more urgent than the findings alone (an escalation or a caller's choice)"))
        if v.result.department and replay.department != v.result.department:
            result = worst(result, "warn")
            ev.append(Evidence(None, f"department {v.result.department}; replay {replay.department}"))
    summary = {"pass": "consistent with the findings", "warn": "differs from the replay", "fail": "inconsistent"}
    return CheckResult("disposition", result, summary[result], tuple(ev))


__all__ = ["critical_questions", "disposition", "emergency_advice", "replay_facts"]
