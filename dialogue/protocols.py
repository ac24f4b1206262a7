"""The clinical knowledge as data: findings, lexicons, complaint protocols, red flags, phrasings and
follow-up questionnaires, all loaded from `prompts/` and validated here. A malformed file raises
`ProtocolError` naming the file and the field, so a clinician can fix it without reading Python."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dialogue.slots import SLOTS
from voice.languages import languages

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
# The languages whose data is loaded from prompts/<code>/: the registry itself (iterated live), so a new
# pack's data is read, and checked, with everyone else's.
LANGS = languages

Disposition = Literal["emergency_ambulance", "emergency", "consultation_24", "consultation", "self_care"]
DISPOSITIONS: tuple[str, ...] = ("self_care", "consultation", "consultation_24", "emergency", "emergency_ambulance")
URGENCY = {d: i for i, d in enumerate(DISPOSITIONS)}
AnswerKind = Literal["yes_no", "number", "scale", "duration", "free"]
_NUM_RE = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?)\s*$")


class ProtocolError(ValueError):
    """A prompts/ data file is malformed; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Cond(_Strict):
    """all: every finding present; any: at least one; none: none present; num: every slot test holds
    (an unknown number fails its test); or: at least one sub-condition holds. Empty = always true."""

    all: list[str] = []
    any: list[str] = []
    none: list[str] = []
    num: dict[str, str] = {}
    or_: list[Cond] = Field(default_factory=list, alias="or")

    @field_validator("num")
    @classmethod
    def _check_num(cls, v: dict[str, str]) -> dict[str, str]:
        for slot, test in v.items():
            if slot not in SLOTS:
                raise ValueError(f"unknown number '{slot}' (known: {', '.join(SLOTS)})")
            if not _NUM_RE.match(str(test)):
                raise ValueError(f"'{slot}: {test}' must look like '>= 38'")
        return v

    def finding_ids(self) -> set[str]:
        ids = set(self.all) | set(self.any) | set(self.none)
        for c in self.or_:
            ids |= c.finding_ids()
        return ids


def num_test(value: float | None, test: str) -> bool:
    if value is None:
        return False
    m = _NUM_RE.match(test)
    assert m is not None
    op, x = m.group(1), float(m.group(2))
    return {"<": value < x, "<=": value <= x, ">": value > x, ">=": value >= x, "==": value == x}[op]


class Derived(_Strict):
    finding: str
    when: Cond


class Catalog(_Strict):
    findings: dict[str, str]
    derived: list[Derived] = []


class Question(_Strict):
    id: str
    kind: AnswerKind
    finding: str | None = None  # yes_no: the finding a "yes" confirms
    slot: str | None = None  # number / scale / duration: where the answer goes
    ask_if: Cond | None = None  # ask only when this holds
    critical: bool = False  # asked even when the question budget is spent

    @field_validator("slot")
    @classmethod
    def _check_slot(cls, v: str | None) -> str | None:
        if v is not None and v not in SLOTS:
            raise ValueError(f"unknown number '{v}'")
        return v


class Rule(_Strict):
    when: Cond
    disposition: Disposition
    reason: str = ""


class Protocol(_Strict):
    id: str
    department: str
    triggers: list[str]
    applies: Cond | None = None  # e.g. only for children
    questions: list[Question] = []
    rules: list[Rule] = []
    default: Disposition
    always: bool = False  # evaluated for every caller (general modifiers), never a chief complaint


class Picture(_Strict):
    """A picture that points to a red flag without its key finding (pain down the left arm with sweating, not
    a word of the chest): the bot asks `ask` at once, as a suspected red flag (dialogue.confirm)."""

    ask: str
    when: Cond


class RedFlag(_Strict):
    id: str
    when: Cond
    level: Literal["emergency_ambulance", "emergency"]
    modes: list[Literal["triage", "followup"]] = ["triage", "followup"]
    pictures: list[Picture] = []


class RedFlags(_Strict):
    red_flags: list[RedFlag]


class Negation(_Strict):
    cues: list[str]
    pseudo: list[str] = []
    terminators: list[str] = []
    resolved: list[str] = []
    resolvable: list[str] = []


class Answers(_Strict):
    unknown: list[str]
    no: list[str]
    yes: list[str]
    repeat: list[str]
    transfer: list[str]
    correction: list[str] = []
    stop: list[str] = []
    identity_denied: list[str] = []
    no_more: list[str] = []


class Lexicon(_Strict):
    negation: Negation
    answers: Answers
    absent: dict[str, list[str]] = {}
    findings: dict[str, list[str]]
    # a NEGATED mention of a normal function is itself a finding ("haven't felt the baby kick", "没感觉到胎动")
    denied_means: dict[str, list[str]] = {}
    # where it hurts: a pain word and one of these body parts in the same clause is that location's pain
    # ("my back's been aching", "脸上长了个痘痘，有点疼" stays plain pain: the part must share the clause)
    pain_sites: dict[str, list[str]] = {}
    # known speech-recognition confusions, rewritten before anything is matched: pattern -> what was meant
    asr_confusions: dict[str, str] = {}
    # phrases that look like a finding but are not it ("poison ivy" is no poisoning); dialogue.lexicon syntax
    exclusions: dict[str, list[str]] = {}
    # English: long words often misspelt by speech recognition, read within one edit (dialogue.lexicon);
    # Mandarin: words never rewritten by the toneless-pinyin tolerance
    asr_words: list[str] = []


class ProtocolText(_Strict):
    name: str
    questions: dict[str, str] = {}
    safety_net: str = ""


class Phrases(BaseModel):
    """prompts/<lang>/dialogue.yaml: everything the bot says outside protocol questions."""

    model_config = ConfigDict(extra="forbid")
    texts: dict[str, str]
    dispositions: dict[str, str]
    departments: dict[str, str]
    red_flags: dict[str, str]
    findings: dict[str, str] = {}


class FollowupQuestion(_Strict):
    id: str
    section: str
    kind: AnswerKind
    finding: str | None = None  # a "yes" confirms this finding (red-flag screen)
    alarm_if: Literal["yes", "no"] | None = None
    alarm_min: float | None = None  # number / scale answers at or above raise a nurse alarm
    alarm_max: float | None = None  # at or below
    departments: list[str] = []  # empty: every department
    slot: str | None = None  # number / scale answers read in this slot's unit and kept as the call's number
    alarm_on_new_findings: bool = False  # any finding the answer newly states flags the call...
    new_findings_ignored: list[str] = []  # ...except these
    skip_if_no: str | None = None  # skipped when the named earlier question was answered no
    then_say: str | None = None  # a prompts/<lang>/followup.yaml `texts` key said after the answer


class Questionnaire(_Strict):
    questions: list[FollowupQuestion]


class FollowupText(_Strict):
    texts: dict[str, str]
    questions: dict[str, str]


class Knowledge(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    catalog: Catalog
    protocols: dict[str, Protocol]
    red_flags: list[RedFlag]
    lexicons: dict[str, Lexicon]
    protocol_text: dict[str, dict[str, ProtocolText]]
    phrases: dict[str, Phrases]
    questionnaire: Questionnaire
    followup_text: dict[str, FollowupText]
    departments: dict[str, Any]

    def known_findings(self) -> set[str]:
        return set(self.catalog.findings)

    def red_flag_findings(self) -> frozenset[str]:
        """Every finding some red flag's rule names."""
        return frozenset(f for rf in self.red_flags for f in rf.when.finding_ids())


# --- loading ----------------------------------------------------------------------------------
def read_yaml(path: Path) -> Any:
    """A prompts file's YAML; a missing or malformed file is a `ProtocolError` that names it."""
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ProtocolError(f"{path}: file is missing") from None
    except yaml.YAMLError as e:
        raise ProtocolError(f"{path}: not valid YAML: {e}") from None


def _model(model: type[BaseModel], path: Path, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()[:5]
        )
        raise ProtocolError(f"{path}: {problems}") from None


def _check_ids(path: Path, field: str, ids: set[str], known: set[str]) -> None:
    bad = sorted(ids - known)
    if bad:
        raise ProtocolError(f"{path}: {field}: unknown finding(s) {', '.join(bad)} (add them to prompts/findings.yaml)")


def _check_regexes(path: Path, field: str, patterns: list[str]) -> None:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise ProtocolError(f"{path}: {field}: bad pattern {p!r}: {e}") from None


def load_knowledge(root: Path | str = PROMPTS_DIR) -> Knowledge:
    root = Path(root)
    cat_path = root / "findings.yaml"
    catalog: Catalog = _model(Catalog, cat_path, read_yaml(cat_path))
    known = set(catalog.findings)
    for i, d in enumerate(catalog.derived):
        _check_ids(cat_path, f"derived[{i}]", {d.finding} | d.when.finding_ids(), known)

    protocols: dict[str, Protocol] = {}
    for path in sorted((root / "protocols").glob("*.yaml")):
        p: Protocol = _model(Protocol, path, read_yaml(path))
        if p.id != path.stem:
            raise ProtocolError(f"{path}: id: '{p.id}' must match the file name '{path.stem}'")
        _check_ids(path, "triggers", set(p.triggers), known)
        if p.applies:
            _check_ids(path, "applies", p.applies.finding_ids(), known)
        seen: set[str] = set()
        for i, q in enumerate(p.questions):
            if q.id in seen:
                raise ProtocolError(f"{path}: questions[{i}].id: duplicate question id '{q.id}'")
            seen.add(q.id)
            if q.kind == "yes_no" and not q.finding:
                raise ProtocolError(f"{path}: questions[{i}].finding: a yes_no question needs the finding it confirms")
            if q.kind in ("number", "scale", "duration") and not q.slot:
                raise ProtocolError(f"{path}: questions[{i}].slot: a {q.kind} question needs a slot")
            if q.finding:
                _check_ids(path, f"questions[{i}].finding", {q.finding}, known)
            if q.ask_if:
                _check_ids(path, f"questions[{i}].ask_if", q.ask_if.finding_ids(), known)
        for i, r in enumerate(p.rules):
            _check_ids(path, f"rules[{i}].when", r.when.finding_ids(), known)
        protocols[p.id] = p
    if not protocols:
        raise ProtocolError(f"{root / 'protocols'}: no protocol files")

    rf_path = root / "red_flags.yaml"
    red_flags: RedFlags = _model(RedFlags, rf_path, read_yaml(rf_path))
    for i, rf in enumerate(red_flags.red_flags):
        _check_ids(rf_path, f"red_flags[{i}].when", rf.when.finding_ids(), known)
        for j, pic in enumerate(rf.pictures):
            _check_ids(rf_path, f"red_flags[{i}].pictures[{j}]", {pic.ask} | pic.when.finding_ids(), known)

    dep_path = root / "departments.yaml"
    departments = read_yaml(dep_path) or {}
    if not isinstance(departments.get("departments"), list):
        raise ProtocolError(f"{dep_path}: departments: a list of department ids is required")
    dept_ids = set(departments["departments"])
    for p in protocols.values():
        if p.department not in dept_ids:
            raise ProtocolError(
                f"{root / 'protocols' / (p.id + '.yaml')}: department: unknown department '{p.department}'"
            )

    q_path = root / "followup" / "questionnaire.yaml"
    questionnaire: Questionnaire = _model(Questionnaire, q_path, read_yaml(q_path))
    for i, fq in enumerate(questionnaire.questions):
        if fq.finding:
            _check_ids(q_path, f"questions[{i}].finding", {fq.finding}, known)
        _check_ids(q_path, f"questions[{i}].new_findings_ignored", set(fq.new_findings_ignored), known)
        if fq.slot is not None and fq.slot not in SLOTS:
            raise ProtocolError(f"{q_path}: questions[{i}].slot: unknown slot '{fq.slot}'")
        earlier = {q.id for q in questionnaire.questions[:i]}
        if fq.skip_if_no is not None and fq.skip_if_no not in earlier:
            raise ProtocolError(f"{q_path}: questions[{i}].skip_if_no: '{fq.skip_if_no}' is not an earlier question")
        for d in fq.departments:
            if d not in dept_ids:
                raise ProtocolError(f"{q_path}: questions[{i}].departments: unknown department '{d}'")

    lexicons: dict[str, Lexicon] = {}
    protocol_text: dict[str, dict[str, ProtocolText]] = {}
    phrases: dict[str, Phrases] = {}
    followup_text: dict[str, FollowupText] = {}
    for lang in LANGS:
        lex_path = root / lang / "lexicon.yaml"
        lex: Lexicon = _model(Lexicon, lex_path, read_yaml(lex_path))
        _check_ids(lex_path, "findings", set(lex.findings), known)
        _check_ids(lex_path, "absent", set(lex.absent), known)
        for fid, pats in lex.absent.items():
            _check_regexes(lex_path, f"absent.{fid}", pats)
        _check_ids(lex_path, "negation.resolvable", set(lex.negation.resolvable), known)
        for fid, pats in lex.findings.items():
            _check_regexes(lex_path, f"findings.{fid}", pats)
        _check_ids(lex_path, "pain_sites", set(lex.pain_sites), known)
        for fid, pats in lex.pain_sites.items():
            _check_regexes(lex_path, f"pain_sites.{fid}", pats)
        _check_ids(lex_path, "denied_means", set(lex.denied_means), known)
        for fid, pats in lex.denied_means.items():
            _check_regexes(lex_path, f"denied_means.{fid}", pats)
        _check_regexes(lex_path, "asr_confusions", list(lex.asr_confusions))
        for name in ("unknown", "no", "yes", "repeat", "transfer", "correction", "stop", "identity_denied", "no_more"):
            _check_regexes(lex_path, f"answers.{name}", getattr(lex.answers, name))
        lexicons[lang] = lex

        pt_path = root / lang / "protocols.yaml"
        raw = read_yaml(pt_path) or {}
        texts = {pid: _model(ProtocolText, pt_path, t) for pid, t in (raw.get("protocols") or {}).items()}
        for pid, p in protocols.items():
            if pid not in texts:
                raise ProtocolError(f"{pt_path}: protocols.{pid}: missing (every protocol needs its {lang} text)")
            for q in p.questions:
                if q.id not in texts[pid].questions:
                    raise ProtocolError(f"{pt_path}: protocols.{pid}.questions.{q.id}: missing {lang} wording")
        protocol_text[lang] = texts

        ph_path = root / lang / "dialogue.yaml"
        ph: Phrases = _model(Phrases, ph_path, read_yaml(ph_path))
        for d in DISPOSITIONS:
            if d not in ph.dispositions:
                raise ProtocolError(f"{ph_path}: dispositions.{d}: missing")
        for d in dept_ids:
            if d not in ph.departments:
                raise ProtocolError(f"{ph_path}: departments.{d}: missing")
        for rf in red_flags.red_flags:
            if rf.id not in ph.red_flags:
                raise ProtocolError(f"{ph_path}: red_flags.{rf.id}: missing")
        phrases[lang] = ph

        ft_path = root / lang / "followup.yaml"
        ft: FollowupText = _model(FollowupText, ft_path, read_yaml(ft_path))
        for fq in questionnaire.questions:
            if fq.id not in ft.questions:
                raise ProtocolError(f"{ft_path}: questions.{fq.id}: missing {lang} wording")
            if fq.then_say is not None and fq.then_say not in ft.texts:
                raise ProtocolError(f"{ft_path}: texts.{fq.then_say}: missing {lang} wording (questionnaire then_say)")
        followup_text[lang] = ft

    return Knowledge(
        catalog=catalog,
        protocols=protocols,
        red_flags=red_flags.red_flags,
        lexicons=lexicons,
        protocol_text=protocol_text,
        phrases=phrases,
        questionnaire=questionnaire,
        followup_text=followup_text,
        departments=departments,
    )


def knowledge(root: str | Path = PROMPTS_DIR) -> Knowledge:
    """The validated knowledge, loaded once per process and shared by all calls (read-only). One cache
    entry per directory however it is named: `knowledge()` and `knowledge(str(PROMPTS_DIR))` (the screen's
    and the confirmations' loaders) were two entries, and the second load (~1.3 s of YAML) fell on the
    first call after a start."""
    return _knowledge(str(Path(root)))


@lru_cache(maxsize=4)
def _knowledge(root: str) -> Knowledge:
    return load_knowledge(root)
