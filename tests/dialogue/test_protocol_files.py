"""The prompts/ data loads and is complete; a malformed file is rejected with an error naming the file
and the field, so a clinician can fix it without reading Python."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dialogue.knowledge import PROMPTS_DIR, load_knowledge
from dialogue.protocols import ProtocolError


def test_shipped_data_is_valid_and_covers_the_complaints() -> None:
    kn = load_knowledge()
    complaints = [p for p in kn.protocols.values() if not p.always]
    assert len(complaints) >= 30
    for needed in (
        "fever_adult",
        "fever_child",
        "fever_infant",
        "cough",
        "sore_throat",
        "breathing",
        "chest_pain",
        "palpitations",
        "headache",
        "dizziness",
        "weakness_numbness",
        "abdominal_pain",
        "vomiting_diarrhoea",
        "urinary",
        "back_pain",
        "injury_fall",
        "head_injury",
        "wounds",
        "burns",
        "bites_stings",
        "rash",
        "allergic_reaction",
        "eye",
        "ear",
        "pregnancy",
        "high_bp",
        "blood_sugar",
        "mental_health",
        "poisoning_overdose",
        "limb_swelling",
        "bleeding",
    ):
        assert needed in kn.protocols, needed
    for p in complaints:
        assert p.rules or p.default, p.id
        for lang in ("zh", "en"):
            assert kn.protocol_text[lang][p.id].name
    kinds = {q.kind for p in complaints for q in p.questions}
    assert kinds == {"yes_no", "number", "scale", "duration"} or kinds >= {"yes_no", "number", "scale", "duration"}


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    dst = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "expect"),
    [
        (
            "protocols/chest_pain.yaml",
            "disposition: emergency,",
            "disposition: urgent,",
            ["chest_pain.yaml", "rules.0.disposition"],
        ),
        (
            "protocols/chest_pain.yaml",
            "finding: sweating",
            "finding: sweatin",
            ["chest_pain.yaml", "questions[1].finding", "sweatin"],
        ),
        (
            "protocols/cough.yaml",
            "any: [coughing_blood]",
            "any: [coughing_bloood]",
            ["cough.yaml", "rules[0].when", "coughing_bloood"],
        ),
        ("protocols/fever_infant.yaml", 'temp_c: ">= 39"', 'temp_c: "hot"', ["fever_infant.yaml", "rules.1.when.num"]),
        ("protocols/fever_infant.yaml", "slot: age_years", "slot: age", ["fever_infant.yaml", "questions.0.slot"]),
        (
            "protocols/headache.yaml",
            "department: neurology",
            "department: neurosurgery",
            ["headache.yaml", "department"],
        ),
        ("protocols/headache.yaml", "default: self_care", "defualt: self_care", ["headache.yaml", "defualt"]),
        ("protocols/ear.yaml", "id: ear\n", "id: ears\n", ["ear.yaml", "id"]),
        (
            "red_flags.yaml",
            "cardiac_chest_pain\n    level: emergency_ambulance",
            "cardiac_chest_pain\n    level: ambulance",
            ["red_flags.yaml", "red_flags.0.level"],
        ),
        ("red_flags.yaml", "all: [tearing_pain]", "all: [tearing]", ["red_flags.yaml", "red_flags[1].when", "tearing"]),
        (
            "zh/protocols.yaml",
            'radiating: "疼痛会不会放射到胳膊、下巴、脖子或者后背？", ',
            "",
            ["zh/protocols.yaml", "protocols.chest_pain.questions.radiating"],
        ),
        (
            "en/lexicon.yaml",
            '  cough: ["re:cough\\\\w*"',
            '  cough: ["re:cough(\\\\w*"',
            ["en/lexicon.yaml", "findings.cough"],
        ),
        ("en/dialogue.yaml", '  self_care: "This', '  selfcare: "This', ["en/dialogue.yaml", "dispositions.self_care"]),
        (
            "followup/questionnaire.yaml",
            "{id: pain, section: pain_wound, kind: scale",
            "{id: pain, section: pain_wound, kind: slider",
            ["questionnaire.yaml", "questions.8.kind"],
        ),
        (
            "findings.yaml",
            "  fever: fever or raised temperature\n",
            "  fever: [fever\n",
            ["findings.yaml", "not valid YAML"],
        ),
    ],
)
def test_malformed_files_are_rejected_clearly(prompts: Path, file: str, old: str, new: str, expect: list[str]) -> None:
    _edit(prompts / file, old, new)
    with pytest.raises(ProtocolError) as e:
        load_knowledge(prompts)
    message = str(e.value)
    for part in expect:
        assert part in message, message


def test_missing_file_is_named(prompts: Path) -> None:
    (prompts / "zh" / "followup.yaml").unlink()
    with pytest.raises(ProtocolError, match=r"zh/followup.yaml: file is missing"):
        load_knowledge(prompts)
