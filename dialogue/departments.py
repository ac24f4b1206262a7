"""Department routing (智能导诊): which clinic a caller's problem belongs to.

Words per department and language are data (prompts/<lang>/department_terms.yaml: strong terms such as
disease names, organs, tests and medicines; weak ones such as common symptoms). The caller's own words are
scored (longest term wins where terms overlap; a negated term does not count; the first sentence, where
people name their problem, counts a little more); the complaint protocol's department adds its vote. An
emergency disposition always goes to the emergency department.

Children: a patient under 14 goes to paediatrics for the internal-medicine departments (departments.yaml).
Who the patient is matters: an adult caller who mentions a child ("我怀孕了，会影响宝宝吗", "my son's
father has high blood pressure") is not a child patient, and a stated adult age wins over child words."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from dialogue.lexicon import compile_many
from dialogue.protocols import PROMPTS_DIR, URGENCY, Knowledge, ProtocolError

STRONG, WEAK = 3.0, 1.0
FIRST_SENTENCE_BONUS = 1.5  # people name their problem first ("糖尿病人能吃粥吗？ 我叔叔…")
PROTOCOL_VOTE = 2.0  # the department of the recognised complaint protocol
_ZH_NEG = re.compile(r"(?:没有|没|不|无|未|否认)[^，。；！？,.;!?]{0,2}$")
_EN_NEG = re.compile(r"\b(?:no|not|never|without|denies)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_FIRST = re.compile(r"[。？！?!\n]|\s{1,}(?=\S)")


@dataclass(frozen=True, slots=True)
class Vote:
    department: str
    term: str
    weight: float


@dataclass(slots=True)
class Terms:
    lang: str
    patterns: list[tuple[str, float, re.Pattern[str]]] = field(default_factory=list)  # (dept, weight, rx)
    child: re.Pattern[str] | None = None
    mother: re.Pattern[str] | None = None
    not_patient: re.Pattern[str] | None = None
    adult_age: re.Pattern[str] | None = None
    newborn: re.Pattern[str] | None = None


def load_terms(lang: str, known: Iterable[str], root: Path | str = PROMPTS_DIR) -> Terms:
    path = Path(root) / lang / "department_terms.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ProtocolError(f"{path}: file is missing") from None
    except yaml.YAMLError as e:
        raise ProtocolError(f"{path}: not valid YAML: {e}") from None
    known = set(known)
    t = Terms(lang)
    for dept, groups in (data.get("departments") or {}).items():
        if dept not in known:
            raise ProtocolError(f"{path}: departments.{dept}: unknown department (see prompts/departments.yaml)")
        if not isinstance(groups, dict) or set(groups) - {"strong", "weak"}:
            raise ProtocolError(f"{path}: departments.{dept}: needs 'strong' and/or 'weak' lists only")
        for group, weight in (("strong", STRONG), ("weak", WEAK)):
            for term in groups.get(group) or []:
                t.patterns.append((dept, weight, compile_many([str(term)], lang, where=f"{path}: {dept}.{group}")))
    names = {
        "child": "child_terms",
        "mother": "mother_context",
        "not_patient": "not_patient",
        "adult_age": "adult_age",
        "newborn": "newborn_terms",
    }
    extra = set(data) - {"departments", *names.values()}
    if extra:
        raise ProtocolError(f"{path}: unknown key(s) {', '.join(sorted(extra))}")
    for key, name in names.items():
        items = data.get(name) or []
        setattr(t, key, compile_many([str(x) for x in items], lang, where=f"{path}: {name}") if items else None)
    return t


@lru_cache(maxsize=4)
def terms(lang: str) -> Terms:
    from dialogue.protocols import knowledge

    return load_terms(lang, knowledge().departments["departments"])


def votes(text: str, lang: str) -> list[Vote]:
    """Department votes from the caller's words: longest term first, each term once, negated terms dropped."""
    t = terms(lang)
    spans: list[tuple[int, int, str, float]] = []
    for dept, weight, rx in t.patterns:
        for m in rx.finditer(text):
            spans.append((m.start(), m.end(), dept, weight))
    spans.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
    taken: list[tuple[int, int]] = []
    first = _first_sentence_end(text, lang)
    seen: set[tuple[str, str]] = set()
    out: list[Vote] = []
    neg = _ZH_NEG if lang == "zh" else _EN_NEG
    for start, end, dept, weight in spans:
        if any(a < end and start < b for a, b in taken):
            continue
        taken.append((start, end))
        word = text[start:end].lower()
        if neg.search(text[max(0, start - 12) : start]) or (dept, word) in seen:
            continue
        seen.add((dept, word))
        out.append(Vote(dept, word, weight * (FIRST_SENTENCE_BONUS if start < first else 1.0)))
    return out


def _first_sentence_end(text: str, lang: str) -> int:
    m = re.search(r"[。？！?!]" if lang == "zh" else r"[.?!]", text)
    return m.end() if m and m.end() < len(text) else 0


def child_patient(texts: list[str], lang: str, age: float | None, paediatric_below: float) -> bool:
    """Is the patient a child? Pregnancy or breastfeeding make the mother the patient; then a stated age
    decides (an adult age said in words too: "my son is 35"); else child words that are about the patient."""
    t = terms(lang)
    joined = "\n".join(texts)
    if t.mother is not None and t.mother.search(joined):
        return False  # the mother is the patient: pregnancy, breastfeeding
    if age is not None:
        return age < paediatric_below
    if t.child is None or (t.adult_age is not None and t.adult_age.search(joined)):
        return False
    cleaned = t.not_patient.sub(" ", joined) if t.not_patient is not None else joined
    return bool(t.child.search(cleaned))


def newborn_patient(texts: list[str], lang: str) -> bool:
    """A newborn is the patient ("刚出生的宝宝鼻子上有黄点", "my 10 day old"): Chinese hospitals see newborns in
    paediatrics (新生儿科) whatever the organ, and a question about feeding one is about the baby, not the mother."""
    t = terms(lang)
    if t.newborn is None:
        return False
    joined = "\n".join(texts)
    cleaned = t.not_patient.sub(" ", joined) if t.not_patient is not None else joined
    return bool(t.newborn.search(cleaned))


def route(
    texts: list[str], lang: str, chief_department: str | None, level: str, age: float | None, kn: Knowledge
) -> str:
    deps = kn.departments
    if URGENCY[level] >= URGENCY["emergency"]:
        return deps.get("emergency_department", "emergency")
    score: dict[str, float] = {}
    order: dict[str, int] = {}
    for i, text in enumerate(texts):
        for v in votes(text, lang):
            score[v.department] = score.get(v.department, 0.0) + v.weight
            order.setdefault(v.department, i * 10_000 + text.find(v.term))
    if chief_department and chief_department != deps.get("default", "general_medicine"):
        score[chief_department] = score.get(chief_department, 0.0) + PROTOCOL_VOTE
        order.setdefault(chief_department, 10**9)
    if score:
        dept = max(score, key=lambda d: (score[d], -order[d]))
    else:
        dept = chief_department or deps.get("default", "general_medicine")
    if dept in deps.get("paediatric_override", []) and child_patient(
        texts, lang, age, deps.get("paediatric_age_below", 14)
    ):
        dept = deps.get("paediatrics", "paediatrics")
    elif dept != deps.get("obstetrics", "obstetrics_gynaecology") and newborn_patient(texts, lang):
        dept = deps.get("paediatrics", "paediatrics")
    return dept
