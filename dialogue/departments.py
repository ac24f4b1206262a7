"""Department routing (智能导诊): which clinic a caller's problem belongs to.

Words per department and language are data (prompts/<lang>/department_terms.yaml: strong terms such as
disease names, organs and tests; medicines, which name the clinic of the condition they treat but less
surely than the condition itself ("高血压患者能吃西地那非吗" is cardiology's question); weak ones such as
common symptoms). The caller's own words are
scored (longest term wins where terms overlap; a negated symptom does not count; the first sentence, where
people name their problem, counts a little more); the complaint protocol's department adds its vote. An
emergency disposition always goes to the emergency department.

Who the patient is decides between clinics that see the same organ:
- a patient under 14 goes to paediatrics for the internal-medicine departments (departments.yaml), and a
  newborn whatever the organ. An adult caller who mentions a child ("我怀孕了，会影响宝宝吗", "my son's father
  has high blood pressure") is not a child patient, and a stated adult age wins over child words;
- genital, sexual and fertility words that both sexes use (下体, 不孕不育, "STI") go to the clinic of the
  patient's sex (`by_sex` in departments.yaml: urology / andrology for a man, gynaecology for a woman).

When no word of any department is said, the semantic encoder (dialogue.semantic's model) compares the
caller's words with a few example questions per department (`examples` in the same file) and routes to the
nearest when it is near enough; else the complaint protocol's department, else general medicine.

How a language is read (words spaced or not, how a sentence ends) comes from its `voice.languages`
pack; the words themselves (negation cues included) are the language's data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dialogue.knowledge import PROMPTS_DIR, Knowledge, read_yaml
from dialogue.lexicon import AsrTolerance, alternation, compile_many, is_plain
from dialogue.protocols import URGENCY, ProtocolError
from voice.languages import LanguagePack, languages

STRONG, MEDICINE, WEAK = 3.0, 2.0, 1.0  # a medicine names its condition's clinic, less surely than the condition
FIRST_SENTENCE_BONUS = 1.5  # people name their problem first ("糖尿病人能吃粥吗？ 我叔叔…")
PROTOCOL_VOTE = 2.0  # the department of the recognised complaint protocol
NEGATION_REACH = 12  # characters before a term searched for a negation cue
NEGATION_GAP = 2  # words (characters where words are not spaced) a cue may stand before the term
SEXED = "sexed"  # the group of words whose clinic is the patient's sex's (by_sex in departments.yaml)
_OPTIONAL = (
    "child_terms", "mother_context", "not_patient", "adult_age", "newborn_terms", "male_terms", "female_terms",
)


@dataclass(frozen=True, slots=True)
class Vote:
    department: str
    term: str
    weight: float


@dataclass(frozen=True, slots=True)
class Term:
    department: str  # a department id, or SEXED
    weight: float
    phrase: str  # as written in the file
    rx: re.Pattern[str]
    key: str  # what the text must hold for the term to be looked for (its first character or letters); "" = always


@dataclass(frozen=True, slots=True)
class Terms:
    """One language's department words, compiled."""

    lang: str
    spaced: bool  # the language's words are spaced (the pack): how a term's key is read
    terms: tuple[Term, ...]
    negation: re.Pattern[str] | None  # a cue just before a term, matched at the end of the text before it
    not_negation: re.Pattern[str] | None  # cues that do not deny ("是不是", "不舒服"), removed before that check
    ignore: re.Pattern[str] | None  # words that hold a term but do not mean it ("刷牙"), blanked before matching
    sentence_end: re.Pattern[str]
    tolerance: AsrTolerance | None  # near-misses of the terms (pinyin, one edit) read as the terms
    groups: Mapping[str, re.Pattern[str] | None]  # child_terms, mother_context, ... (_OPTIONAL)
    examples: tuple[tuple[str, str], ...]  # (department, example question) for the semantic fallback
    examples_threshold: float

    def group(self, name: str) -> re.Pattern[str] | None:
        return self.groups.get(name)


def _negation(cues: list[str], pack: LanguagePack) -> re.Pattern[str] | None:
    if not cues:
        return None
    alt = "|".join(re.escape(c) for c in sorted(cues, key=len, reverse=True))
    if pack.spaced:
        return re.compile(rf"\b(?:{alt})\s+(?:\w+\s+){{0,{NEGATION_GAP}}}$", re.IGNORECASE)
    return re.compile(rf"(?:{alt})[^，。；！？,.;!?\s]{{0,{NEGATION_GAP}}}$")


def _sentence_end(pack: LanguagePack) -> re.Pattern[str]:
    # the pack's full stop, and question and exclamation marks of either width (callers type both)
    return re.compile("[" + re.escape(pack.sentence_end + "?!？！") + "]")


def load_terms(lang: str, known: Iterable[str], root: Path | str = PROMPTS_DIR) -> Terms:
    path = Path(root) / lang / "department_terms.yaml"
    data = read_yaml(path) or {}
    pack = languages.or_fallback(lang)
    known = set(known)
    extra = set(data) - {
        "departments", SEXED, "negation", "not_negation", "ignore", "examples", "examples_threshold", *_OPTIONAL
    }
    if extra:
        raise ProtocolError(f"{path}: unknown key(s) {', '.join(sorted(extra))}")
    terms: list[Term] = []
    literals: list[str] = []
    blocks = dict(data.get("departments") or {})
    if data.get(SEXED):
        blocks[SEXED] = data[SEXED]
    for dept, groups in blocks.items():
        if dept != SEXED and dept not in known:
            raise ProtocolError(f"{path}: departments.{dept}: unknown department (see prompts/departments.yaml)")
        if not isinstance(groups, dict) or set(groups) - {"strong", "medicines", "weak"}:
            raise ProtocolError(f"{path}: departments.{dept}: needs 'strong', 'medicines' and/or 'weak' lists only")
        for group, weight in (("strong", STRONG), ("medicines", MEDICINE), ("weak", WEAK)):
            for term in groups.get(group) or []:
                where = f"{path}: {dept}.{group}"
                rx = compile_many([str(term)], lang, where=where)
                terms.append(Term(dept, weight, str(term), rx, _key(str(term), lang, pack.spaced)))
                if is_plain(str(term), lang):
                    literals.append(str(term))
    groups_rx = {}
    for name in _OPTIONAL:
        items = data.get(name) or []
        groups_rx[name] = compile_many([str(x) for x in items], lang, where=f"{path}: {name}") if items else None
    examples: list[tuple[str, str]] = []
    for dept, items in (data.get("examples") or {}).items():
        if dept not in known:
            raise ProtocolError(f"{path}: examples.{dept}: unknown department (see prompts/departments.yaml)")
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise ProtocolError(f"{path}: examples.{dept}: a list of example questions is required")
        examples += [(dept, t.strip()) for t in items]
    try:
        threshold = float(data.get("examples_threshold", 1.0))
    except (TypeError, ValueError):
        raise ProtocolError(f"{path}: examples_threshold: a number is required") from None
    tolerance = AsrTolerance(literals, pack.rules)
    return Terms(
        lang=lang,
        spaced=pack.spaced,
        terms=tuple(terms),
        negation=_negation(_strings(data.get("negation"), f"{path}: negation"), pack),
        not_negation=_phrases(data.get("not_negation"), lang, f"{path}: not_negation"),
        ignore=_phrases(data.get("ignore"), lang, f"{path}: ignore"),
        sentence_end=_sentence_end(pack),
        tolerance=tolerance if tolerance.active else None,
        groups=groups_rx,
        examples=tuple(examples),
        examples_threshold=threshold,
    )


def _strings(items: object, where: str) -> list[str]:
    # YAML reads a bare no / yes / on as a boolean: a cue list of words must hold only strings
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ProtocolError(f"{where}: a list of words is required (quote \"no\", \"yes\", \"on\")")
    return items


def _key(phrase: str, lang: str, spaced: bool) -> str:
    # A plain phrase matches only where its first word (three letters; inflections add endings) or first
    # two characters are in the text: looking for ~1,400 terms one by one costs 10-20 ms per utterance,
    # the few whose key is there a few.
    if not is_plain(phrase, lang) or phrase[:1] in "~# ":
        return ""
    if spaced:
        return next(w for w in re.split(r"[^a-z0-9]+", phrase.lower()) if w)[:3]  # c-section → "c", as in the text
    return phrase[:2] if len(phrase) > 1 and phrase[1] not in "~# " else phrase[0]


def _present(text: str, t: Terms) -> set[str]:
    if t.spaced:
        return {w[:k] for w in re.findall(r"[a-z0-9]+", text.lower()) for k in (1, 2, 3)}
    return set(text) | {text[i : i + 2] for i in range(len(text) - 1)}


def _phrases(items: object, lang: str, where: str) -> re.Pattern[str] | None:
    words = _strings(items, where)
    return compile_many(words, lang, where=where) if words else None


def _blank(text: str, rx: re.Pattern[str] | None) -> str:
    # the same length, so that offsets into the caller's words still hold
    return rx.sub(lambda m: " " * len(m.group(0)), text) if rx is not None else text


@lru_cache(maxsize=4)
def terms(lang: str) -> Terms:
    from dialogue.knowledge import knowledge

    return load_terms(lang, knowledge().departments["departments"])


def _read(text: str, t: Terms) -> str:
    # near-misses become the words themselves, character for character (发迹线 → 发际线): offsets hold
    if t.tolerance is not None:
        fixed = t.tolerance.fix(text)
        text = fixed if len(fixed) == len(text) else text
    return _blank(text, t.ignore)


def votes(text: str, lang: str, sex: str | None = None, by_sex: Mapping[str, str] | None = None) -> list[Vote]:
    """Department votes from the caller's words: longest term first, each term once, negated terms dropped
    ("没有发烧"; a complaint that is itself a negation, "不射精", is a term of its own). Words of both sexes
    go to `by_sex[sex]`, or to every clinic of `by_sex` while the sex is not known."""
    return list(_votes(text, lang, sex, tuple((by_sex or {}).items())))


@lru_cache(maxsize=512)  # a call's earlier utterances are routed again on every turn
def _votes(text: str, lang: str, sex: str | None, by_sex_items: tuple[tuple[str, str], ...]) -> tuple[Vote, ...]:
    by_sex = dict(by_sex_items)
    t = terms(lang)
    text = _read(text, t)
    present = _present(text, t)
    spans: list[tuple[int, int, Term]] = []
    for term in t.terms:
        if term.key and term.key not in present:
            continue
        for m in term.rx.finditer(text):
            spans.append((m.start(), m.end(), term))
    # the longest first; of two as long, the one written as it was said ("teething" is not "teeth" + ing)
    spans.sort(key=lambda s: (-(s[1] - s[0]), s[0], text[s[0] : s[1]].lower() != s[2].phrase.lower()))
    taken: list[tuple[int, int]] = []
    m_end = t.sentence_end.search(text)
    first = m_end.end() if m_end and m_end.end() < len(text) else 0
    seen: set[tuple[str, str]] = set()
    out: list[Vote] = []
    for start, end, term in spans:
        if any(a < end and start < b for a, b in taken):
            continue
        taken.append((start, end))
        word = text[start:end].lower()
        before = _blank(text[max(0, start - NEGATION_REACH) : start], t.not_negation)
        if t.negation is not None and t.negation.search(before):
            continue
        if term.department == SEXED:
            depts = [by_sex[sex]] if by_sex and sex is not None and sex in by_sex else list((by_sex or {}).values())
        else:
            depts = [term.department]
        for dept in depts:
            if (dept, word) in seen:
                continue
            seen.add((dept, word))
            out.append(Vote(dept, word, term.weight * (FIRST_SENTENCE_BONUS if start < first else 1.0)))
    return tuple(out)


def patient_sex(texts: list[str], lang: str) -> str | None:
    """"male" / "female" when the caller's words say the patient's sex (我是男性, 老公, "my wife"), else None.
    Both said (a couple's question) is not known."""
    t = terms(lang)
    joined = _read("\n".join(texts), t)
    male, female = t.group("male_terms"), t.group("female_terms")
    is_m = bool(male is not None and male.search(joined))
    is_f = bool(female is not None and female.search(joined))
    return "male" if is_m and not is_f else "female" if is_f and not is_m else None


def child_patient(texts: list[str], lang: str, age: float | None, paediatric_below: float) -> bool:
    """Is the patient a child? Pregnancy or breastfeeding make the mother the patient; then a stated age
    decides (an adult age said in words too: "my son is 35"); else child words that are about the patient."""
    t = terms(lang)
    joined = "\n".join(texts)
    mother, child, adult = t.group("mother_context"), t.group("child_terms"), t.group("adult_age")
    # a child's own condition is not the mother's context ("母乳性黄疸" is the baby's jaundice)
    if mother is not None and mother.search(_blank(joined, _paediatric_terms(lang))):
        return False  # the mother is the patient: pregnancy, breastfeeding
    if age is not None:
        return age < paediatric_below
    if child is None or (adult is not None and adult.search(joined)):
        return False
    return bool(child.search(_not_patient_removed(joined, t)))


def newborn_patient(texts: list[str], lang: str) -> bool:
    """A newborn is the patient ("刚出生的宝宝鼻子上有黄点", "my 10 day old"): Chinese hospitals see newborns in
    paediatrics (新生儿科) whatever the organ, and a question about feeding one is about the baby, not the mother."""
    t = terms(lang)
    newborn = t.group("newborn_terms")
    return newborn is not None and bool(newborn.search(_not_patient_removed("\n".join(texts), t)))


@lru_cache(maxsize=4)
def _paediatric_terms(lang: str) -> re.Pattern[str] | None:
    rx = [x.rx.pattern for x in terms(lang).terms if x.department == "paediatrics"]
    return re.compile(alternation(rx)) if rx else None


def _not_patient_removed(text: str, t: Terms) -> str:
    rx = t.group("not_patient")
    return rx.sub(" ", text) if rx is not None else text


# --- the semantic fallback -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Examples:
    departments: tuple[str, ...]
    vecs: np.ndarray


@lru_cache(maxsize=4)
def _examples(lang: str) -> _Examples | None:
    from dialogue import semantic

    t = terms(lang)
    enc = semantic.encoder()
    if enc is None or not t.examples:
        return None
    return _Examples(tuple(d for d, _ in t.examples), enc.encode([x for _, x in t.examples]))


@lru_cache(maxsize=256)
def nearest(text: str, lang: str) -> tuple[str, float] | None:
    """The department whose example questions are closest to the caller's words (mean of its best two),
    with that likeness; None without the encoder or examples."""
    from dialogue import semantic

    ex = _examples(lang)
    enc = semantic.encoder()
    if ex is None or enc is None or not text.strip():
        return None
    sims = np.einsum("j,kj->k", enc.encode([text])[0], ex.vecs)
    best: dict[str, list[float]] = {}
    for dept, s in zip(ex.departments, sims.tolist(), strict=True):
        best.setdefault(dept, []).append(s)
    scored = {d: float(np.mean(sorted(v, reverse=True)[:2])) for d, v in best.items()}
    dept = max(scored, key=scored.__getitem__)
    return dept, scored[dept]


def route(
    texts: list[str], lang: str, chief_department: str | None, level: str, age: float | None, kn: Knowledge
) -> str:
    deps = kn.departments
    if URGENCY[level] >= URGENCY["emergency"]:
        return str(deps.get("emergency_department", "emergency"))
    default = str(deps.get("default", "general_medicine"))
    by_sex = deps.get("by_sex") or {}
    sex = patient_sex(texts, lang) if by_sex else None
    score: dict[str, float] = {}
    order: dict[str, int] = {}
    for i, text in enumerate(texts):
        for v in votes(text, lang, sex, by_sex):
            score[v.department] = score.get(v.department, 0.0) + v.weight
            order.setdefault(v.department, i * 10_000 + text.find(v.term))
    if not score and chief_department in (None, default):
        near = nearest("\n".join(texts), lang)
        if near is not None and near[1] >= terms(lang).examples_threshold:
            score[near[0]] = WEAK
            order[near[0]] = 0
    if chief_department and chief_department != default:
        score[chief_department] = score.get(chief_department, 0.0) + PROTOCOL_VOTE
        order.setdefault(chief_department, 10**9)
    if score:
        dept = max(score, key=lambda d: (score[d], -order[d]))
    else:
        dept = chief_department or default
    below = deps.get("paediatric_age_below", 14)
    if dept in deps.get("paediatric_override", []) and child_patient(texts, lang, age, below):
        dept = deps.get("paediatrics", "paediatrics")
    elif dept in deps.get("paediatric_override_when_age_said", []) and age is not None:
        if child_patient(texts, lang, age, below):
            dept = deps.get("paediatrics", "paediatrics")
    elif dept != deps.get("obstetrics", "obstetrics_gynaecology") and newborn_patient(texts, lang):
        dept = deps.get("paediatrics", "paediatrics")
    return dept
