"""The protocol engine: from facts to red flags, complaints, a disposition on the five-level scale and
a department (智能导诊), and the next protocol question worth asking. Pure functions over data."""

from __future__ import annotations

from dataclasses import dataclass, field

from dialogue.facts import Facts
from dialogue.knowledge import Knowledge
from dialogue.protocols import DISPOSITIONS, URGENCY, Protocol, Question
from voice.languages import languages

MAX_QUESTIONS = 6  # protocol questions per call; critical ones may go up to MAX_QUESTIONS_CRITICAL
MAX_QUESTIONS_CRITICAL = 9
# findings that say who calls or that something hurts, but not what is wrong: on their own they are not
# an understood complaint
_MATCHED = ("paraphrase", "semantic", "llm")  # read by likeness or by the LLM, not in the lexicon's words
NONSPECIFIC = frozenset({"child", "baby", "child_under_16", "elderly", "pregnant", "pain", "sudden_onset", "worsening"})


@dataclass(frozen=True, slots=True)
class RedFlagHit:
    id: str
    level: str


@dataclass(slots=True)
class Assessment:
    disposition: str
    department: str
    chief_complaint: str | None
    complaints: list[tuple[str, str]] = field(default_factory=list)  # (protocol id, its disposition)
    red_flags: list[RedFlagHit] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def urgent(self) -> bool:
        return URGENCY[self.disposition] >= URGENCY["emergency"]


def most_urgent(*levels: str) -> str:
    return max(levels, key=lambda d: URGENCY[d])


def red_flags(facts: Facts, kn: Knowledge, mode: str = "triage") -> list[RedFlagHit]:
    return [
        RedFlagHit(rf.id, rf.level) for rf in kn.red_flags if (c := rf.condition(mode)) is not None and facts.holds(c)
    ]


def triggered(facts: Facts, kn: Knowledge) -> list[Protocol]:
    """Complaint protocols the caller's findings point to, in order of first mention."""
    hits = []
    for p in kn.protocols.values():
        if p.always or not any(facts.present(t) for t in p.triggers):
            continue
        if p.applies is not None and not facts.holds(p.applies):
            continue
        hits.append(p)
    return sorted(hits, key=lambda p: min(facts.first_turn(t) for t in p.triggers if facts.present(t)))


def protocol_disposition(p: Protocol, facts: Facts) -> tuple[str, list[str]]:
    level, reasons = p.default, []
    for r in p.rules:
        if facts.holds(r.when):
            reasons.append(f"{p.id}:{r.reason or r.disposition}")
            level = most_urgent(level, r.disposition)
    return level, reasons


def assess(facts: Facts, kn: Knowledge, mode: str = "triage") -> Assessment:
    facts.derive(kn.catalog)
    flags = red_flags(facts, kn, mode)
    complaints: list[tuple[str, str]] = []
    reasons: list[str] = []
    level = DISPOSITIONS[0]
    for p in triggered(facts, kn):
        d, why = protocol_disposition(p, facts)
        complaints.append((p.id, d))
        reasons += why
    for p in kn.protocols.values():
        if p.always:
            for r in p.rules:
                if facts.holds(r.when):
                    reasons.append(f"{p.id}:{r.reason or r.disposition}")
                    level = most_urgent(level, r.disposition)
    for _, d in complaints:
        level = most_urgent(level, d)
    for f in flags:
        reasons.append(f"red_flag:{f.id}")
        level = most_urgent(level, f.level)
    understood = any(
        facts.present(t) and (facts.findings.get(t) is None or facts.findings[t].source not in _MATCHED)
        for pid, _ in complaints
        for t in kn.protocols[pid].triggers
    )
    if not understood and not flags:
        # fail-safe: no complaint protocol recognised. Never home care. When nothing specific was understood
        # at all (only who is calling, or a pain we cannot place), a clinician within 24 h; severity
        # modifiers (general.yaml) may raise it further.
        specific = [
            f for f, v in facts.findings.items() if v.present and f not in NONSPECIFIC and v.source not in _MATCHED
        ]
        floor = "consultation" if specific else "consultation_24"
        if URGENCY[level] < URGENCY[floor]:
            level = floor
            reasons.append(f"failsafe:no_recognised_complaint:{floor}")
    chief = None
    if complaints:
        chief = max(complaints, key=lambda c: URGENCY[c[1]])[0]  # stable: earliest among the most urgent
    return Assessment(level, department(chief, level, facts, kn), chief, complaints, flags, reasons)


def department(chief: str | None, level: str, facts: Facts, kn: Knowledge) -> str:
    """Where to go (智能导诊): dialogue.departments scores the caller's words and the complaint's clinic."""
    from dialogue.departments import route

    lang = languages.or_fallback(facts.lang).code  # the call's language, not a guess from the script
    chief_dept = kn.protocols[chief].department if chief else None
    return route(facts.utterances, lang, chief_dept, level, facts.num("age_years"), kn)


def _target_known(q: Question, facts: Facts) -> bool:
    if q.slot is not None:
        return facts.num(q.slot) is not None
    return q.finding is not None and q.finding in facts.findings


def next_question(
    facts: Facts, kn: Knowledge, assessment: Assessment, asked: set[str]
) -> tuple[Protocol, Question] | None:
    """The next unanswered question of the complaints, most urgent complaint first; None when done."""
    n = len(asked)
    if n >= MAX_QUESTIONS_CRITICAL:
        return None
    order = sorted(assessment.complaints, key=lambda c: -URGENCY[c[1]])
    for pid, _ in order:
        p = kn.protocols[pid]
        for q in p.questions:
            key = f"{pid}.{q.id}"
            if key in asked or _target_known(q, facts):
                continue
            if q.ask_if is not None and not facts.holds(q.ask_if):
                continue
            if n >= MAX_QUESTIONS and not q.critical:
                continue
            return p, q
    return None
