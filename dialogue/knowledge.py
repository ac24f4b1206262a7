"""The clinical knowledge, loaded from `prompts/` and validated: each file against its model
(dialogue.protocols) and against the others (every finding, department, question and red flag a file names
exists, every language has every wording). A malformed file raises `ProtocolError` naming the file and the
field, so a clinician can fix it without reading Python."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dialogue.protocols import (
    DISPOSITIONS,
    Answers,
    Catalog,
    FollowupText,
    Lexicon,
    Phrases,
    Protocol,
    ProtocolError,
    ProtocolText,
    Questionnaire,
    RedFlag,
    RedFlags,
)
from dialogue.slots import SLOTS
from voice.languages import languages

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
# The languages whose data is loaded from prompts/<code>/: the registry itself (iterated live), so a new
# pack's data is read, and checked, with everyone else's.
LANGS = languages


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
        return frozenset(f for rf in self.red_flags for f in rf.finding_ids())


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


def validated(model: type[BaseModel], path: Path, data: Any) -> Any:
    """`data` as `model`, or a `ProtocolError` naming the file and the first fields that are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()[:5]
        )
        raise ProtocolError(f"{path}: {problems}") from None


def check_ids(path: Path, field: str, ids: set[str], known: set[str]) -> None:
    """Every finding id `field` names is in the catalogue (prompts/findings.yaml)."""
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
    catalog: Catalog = validated(Catalog, cat_path, read_yaml(cat_path))
    known = set(catalog.findings)
    for i, derived in enumerate(catalog.derived):
        check_ids(cat_path, f"derived[{i}]", {derived.finding} | derived.when.finding_ids(), known)

    protocols: dict[str, Protocol] = {}
    for path in sorted((root / "protocols").glob("*.yaml")):
        p: Protocol = validated(Protocol, path, read_yaml(path))
        if p.id != path.stem:
            raise ProtocolError(f"{path}: id: '{p.id}' must match the file name '{path.stem}'")
        check_ids(path, "triggers", set(p.triggers), known)
        if p.applies:
            check_ids(path, "applies", p.applies.finding_ids(), known)
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
                check_ids(path, f"questions[{i}].finding", {q.finding}, known)
            if q.ask_if:
                check_ids(path, f"questions[{i}].ask_if", q.ask_if.finding_ids(), known)
        for i, r in enumerate(p.rules):
            check_ids(path, f"rules[{i}].when", r.when.finding_ids(), known)
        protocols[p.id] = p
    if not protocols:
        raise ProtocolError(f"{root / 'protocols'}: no protocol files")

    rf_path = root / "red_flags.yaml"
    red_flags: RedFlags = validated(RedFlags, rf_path, read_yaml(rf_path))
    for i, rf in enumerate(red_flags.red_flags):
        check_ids(rf_path, f"red_flags[{i}].when", rf.when.finding_ids(), known)
        if rf.triage_when is not None:
            check_ids(rf_path, f"red_flags[{i}].triage_when", rf.triage_when.finding_ids(), known)
        for j, pic in enumerate(rf.pictures):
            check_ids(rf_path, f"red_flags[{i}].pictures[{j}]", {pic.ask} | pic.when.finding_ids(), known)

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
    questionnaire: Questionnaire = validated(Questionnaire, q_path, read_yaml(q_path))
    for i, fq in enumerate(questionnaire.questions):
        if fq.finding:
            check_ids(q_path, f"questions[{i}].finding", {fq.finding}, known)
        check_ids(q_path, f"questions[{i}].new_findings_ignored", set(fq.new_findings_ignored), known)
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
        lex: Lexicon = validated(Lexicon, lex_path, read_yaml(lex_path))
        check_ids(lex_path, "findings", set(lex.findings), known)
        check_ids(lex_path, "absent", set(lex.absent), known)
        for fid, pats in lex.absent.items():
            _check_regexes(lex_path, f"absent.{fid}", pats)
        check_ids(lex_path, "negation.resolvable", set(lex.negation.resolvable), known)
        for fid, pats in lex.findings.items():
            _check_regexes(lex_path, f"findings.{fid}", pats)
        check_ids(lex_path, "pain_sites", set(lex.pain_sites), known)
        for fid, pats in lex.pain_sites.items():
            _check_regexes(lex_path, f"pain_sites.{fid}", pats)
        check_ids(lex_path, "denied_means", set(lex.denied_means), known)
        for fid, pats in lex.denied_means.items():
            _check_regexes(lex_path, f"denied_means.{fid}", pats)
        _check_regexes(lex_path, "asr_confusions", list(lex.asr_confusions))
        for name in Answers.model_fields:
            _check_regexes(lex_path, f"answers.{name}", getattr(lex.answers, name))
        lexicons[lang] = lex

        pt_path = root / lang / "protocols.yaml"
        raw = read_yaml(pt_path) or {}
        texts = {pid: validated(ProtocolText, pt_path, t) for pid, t in (raw.get("protocols") or {}).items()}
        for pid, p in protocols.items():
            if pid not in texts:
                raise ProtocolError(f"{pt_path}: protocols.{pid}: missing (every protocol needs its {lang} text)")
            for q in p.questions:
                if q.id not in texts[pid].questions:
                    raise ProtocolError(f"{pt_path}: protocols.{pid}.questions.{q.id}: missing {lang} wording")
        protocol_text[lang] = texts

        ph_path = root / lang / "dialogue.yaml"
        ph: Phrases = validated(Phrases, ph_path, read_yaml(ph_path))
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
        ft: FollowupText = validated(FollowupText, ft_path, read_yaml(ft_path))
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
