"""Department routing (智能导诊, dialogue.departments): chronic conditions, andrology, women's health, skin,
eyes, teeth, children, mental health; who the patient is; negation; the development figure on the DEV
split of the shared Chinese patient questions (TEST is scored by bench.understanding, not tuned on)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dialogue.departments import child_patient, load_terms, votes
from dialogue.protocols import ProtocolError, knowledge
from dialogue.triage import triage_text

_HERE = Path(__file__).resolve()
# shared/ lies beside the repository (a worktree sits one level deeper)
DATA = next(
    (p / "shared" / "data" / "zh_department_dev.jsonl" for p in _HERE.parents[3:5] if (p / "shared").exists()),
    _HERE.parents[3] / "shared" / "data" / "zh_department_dev.jsonl",
)


@pytest.mark.parametrize(
    ("lang", "text", "dept"),
    [
        ("zh", "我有糖尿病好几年了，最近血糖控制得不好，想复诊调药", "endocrinology"),
        ("zh", "甲状腺结节要不要紧，甲功有点异常", "endocrinology"),
        ("zh", "高血压复查，降压药需要换吗", "cardiology"),
        ("zh", "最近早泄，勃起也不太好", "urology"),
        ("zh", "月经推迟了十天，白带也有点多", "obstetrics_gynaecology"),
        ("zh", "脸上长了好多痘痘，还有点痒", "dermatology"),
        ("zh", "眼睛干涩发痒，近视好像又加深了", "ophthalmology"),
        ("zh", "智齿发炎，牙龈肿了", "stomatology"),
        ("zh", "最近心情特别低落，整晚失眠，总觉得焦虑", "psychiatry"),
        ("zh", "孩子六岁，咳嗽三天了", "paediatrics"),
        ("zh", "宝宝八个月，拉肚子两天", "paediatrics"),
        ("zh", "没有发烧，就是牙疼得厉害", "stomatology"),
        ("zh", "膝盖疼，上下楼梯更明显", "orthopaedics"),
        ("zh", "耳鸣好几天了，听力也下降", "ent"),
        ("en", "I'm diabetic and my sugars have been all over the place, I need a review", "endocrinology"),
        ("en", "follow-up for my high blood pressure, the tablets make me tired", "cardiology"),
        ("en", "my thyroid levels came back abnormal", "endocrinology"),
        ("en", "I've been having trouble getting an erection", "urology"),
        ("en", "my periods have been really heavy and irregular", "obstetrics_gynaecology"),
        ("en", "I've got acne all over my back", "dermatology"),
        ("en", "my eyesight has gone blurry in one eye over a few months", "ophthalmology"),
        ("en", "I need to see someone about my wisdom tooth", "stomatology"),
        ("en", "I've been so depressed and anxious I can't work", "psychiatry"),
        ("en", "my 3 year old has had a cough for a week", "paediatrics"),
        # a newborn is seen in paediatrics whatever the organ (新生儿科), even a question about feeding
        ("zh", "刚出生的宝宝眼睛有分泌物", "paediatrics"),
        ("zh", "孩子刚出生，没有母乳，喂奶粉用什么姿势好", "paediatrics"),
        ("en", "my 10 day old has sticky eyes", "paediatrics"),
    ],
)
def test_common_reasons_go_to_their_clinic(lang: str, text: str, dept: str) -> None:
    r = triage_text(text, lang)
    assert r.department == dept, (r.department, r.disposition, r.red_flags)


@pytest.mark.parametrize(
    ("lang", "text", "dept"),
    [
        ("zh", "我怀孕五个月了，感冒咳嗽，吃药会影响宝宝吗", "respiratory"),
        ("zh", "我在哺乳期，宝宝三个月，我自己咳嗽得厉害", "respiratory"),
        ("zh", "我儿子三十岁了，血压一直偏高", "cardiology"),
        ("en", "I'm breastfeeding my baby and I have a bad chesty cough", "respiratory"),
        ("en", "my son is 35 and his blood pressure is high", "cardiology"),
    ],
)
def test_an_adult_who_mentions_a_child_is_not_a_child_patient(lang: str, text: str, dept: str) -> None:
    r = triage_text(text, lang)
    assert r.department == dept, (r.department, r.disposition)
    assert r.department != "paediatrics"


def test_child_patient_rules() -> None:
    assert child_patient(["孩子咳嗽"], "zh", None, 14)
    assert not child_patient(["孩子咳嗽"], "zh", 30, 14)  # a stated age decides
    assert child_patient(["he coughs"], "en", 5, 14)
    assert not child_patient(["邻家孩子父母都很正常"], "zh", None, 14)
    assert not child_patient(["I'm pregnant, will it harm the baby"], "en", None, 14)


def test_negated_terms_do_not_vote() -> None:
    assert not [v for v in votes("没有发烧，也不咳嗽", "zh") if v.department == "respiratory"]
    assert [v.department for v in votes("牙疼", "zh")] == ["stomatology"]
    assert not [v for v in votes("no cough at all", "en") if v.department == "respiratory"]


def test_an_emergency_goes_to_the_emergency_department() -> None:
    assert triage_text("my dad has diabetes and now he's unconscious", "en").department == "emergency"


def test_bad_term_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    f = tmp_path / "zh" / "department_terms.yaml"
    f.write_text("departments:\n  dentistry: {strong: [牙]}\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="dentistry: unknown department"):
        load_terms("zh", knowledge().departments["departments"], tmp_path)
    f.write_text("departments:\n  stomatology: {often: [牙]}\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="strong"):
        load_terms("zh", knowledge().departments["departments"], tmp_path)


@pytest.mark.skipif(not DATA.exists(), reason="shared/data/zh_department_dev.jsonl is not beside the repo")
def test_development_split_top1() -> None:
    """DEV only (the split rule: TEST when the first hex digit of sha1(text) is 0-4)."""
    rows = [json.loads(x) for x in DATA.read_text(encoding="utf-8").splitlines() if x.strip()]
    dev = [r for r in rows if hashlib.sha1(r["text"].encode("utf-8")).hexdigest()[0] not in "01234"]
    right = sum(triage_text(r["text"], "zh").department in r["departments"] for r in dev)
    assert right / len(dev) >= 0.85, right / len(dev)


def test_a_mother_who_just_gave_birth_is_not_a_newborn_patient() -> None:
    assert triage_text("我刚生完孩子，伤口有点疼", "zh").department != "paediatrics"
