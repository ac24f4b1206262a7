"""Rule-based understanding, both languages: numbers (Chinese numerals, temperatures, ages, durations,
pregnancy weeks, pain scores), symptoms with lay words and negation (answers: test_answers)."""

from __future__ import annotations

import pytest

from dialogue.extract import extractor
from dialogue.slots import bare_number, extract_slots
from voice.languages.en.numbers import read_numbers as normalise_en
from voice.languages.zh.numbers import read_numbers as normalise_zh
from voice.languages.zh.numbers import zh_to_int


@pytest.mark.parametrize(
    ("text", "value"),
    [("三十八", 38), ("两", 2), ("十二", 12), ("一百零一", 101), ("二十", 20), ("八十五", 85), ("十", 10)],
)
def test_chinese_numerals(text: str, value: int) -> None:
    assert zh_to_int(text) == value


def test_number_normalisation_keeps_idioms() -> None:
    assert normalise_zh("三十八度三") == "38度3"
    assert normalise_zh("两三天") == "3天"
    assert normalise_zh("一下子头晕") == "一下子头晕"
    assert normalise_zh("一直咳嗽") == "一直咳嗽"
    assert normalise_en("a couple of days") == "2 days"
    assert normalise_en("six times a day") == "6 times per day"


@pytest.mark.parametrize(
    ("said", "read"),
    [("a temp of a hundred point five", "a temp of 100.5"), ("a hundred degrees", "100 degrees"),
     ("a hundred and three", "103"), ("one hundred and twenty-two", "122"), ("a hundred and four point two", "104.2")],
)
def test_what_follows_hundred_is_kept_unless_it_is_part_of_the_number(said: str, read: str) -> None:
    # "point" and "degrees" were taken as the number's last word and dropped: 100.5 °F read as 100 (37.8 °C),
    # under the 38 °C of a fever in a baby under three months
    assert normalise_en(said) == read


SLOTS = [
    ("zh", "发烧38度5", "temp_c", 38.5),
    ("zh", "体温三十八度三", "temp_c", 38.3),
    ("zh", "烧到39.2度", "temp_c", 39.2),
    ("zh", "宝宝两个月大", "age_years", 2 / 12),
    ("zh", "我今年八十岁了", "age_years", 80),
    ("zh", "孩子三岁半", "age_years", 3.5),
    ("zh", "出生四十天的宝宝", "age_years", 40 / 365),
    ("zh", "咳嗽两个礼拜了", "duration_hours", 336),
    ("zh", "头疼三天了", "duration_hours", 72),
    ("zh", "从昨天开始拉肚子", "duration_hours", 24),
    ("zh", "半个小时前开始的", "duration_hours", 0.5),
    ("zh", "怀孕二十周", "pregnancy_weeks", 20),
    ("zh", "孕32周", "pregnancy_weeks", 32),
    ("zh", "疼得打8分", "pain_score", 8),
    ("zh", "疼痛七分", "pain_score", 7),
    ("zh", "血糖二十五", "glucose_mmol", 25),
    ("zh", "一天拉了七八次", "episodes_per_day", 8),
    ("en", "a fever of 101°F", "temp_c", 38.3),
    ("en", "temperature is 38.6", "temp_c", 38.6),
    ("en", "it was 39 degrees", "temp_c", 39),
    ("en", "my 80-year-old father", "age_years", 80),
    ("en", "my baby is two months old", "age_years", 2 / 12),
    ("en", "I'm 45", "age_years", 45),
    ("en", "for two weeks", "duration_hours", 336),
    ("en", "since yesterday", "duration_hours", 24),
    ("en", "for a couple of hours", "duration_hours", 2),
    ("en", "I'm 20 weeks pregnant", "pregnancy_weeks", 20),
    ("en", "the pain is 8 out of 10", "pain_score", 8),
    ("en", "my blood sugar is 400", "glucose_mmol", 22.2),
    ("en", "oxygen saturation 91%", "spo2", 91),
    ("en", "diarrhoea 7 times a day", "episodes_per_day", 7),
]


@pytest.mark.parametrize(("lang", "text", "slot", "value"), SLOTS)
def test_numeric_slots(lang: str, text: str, slot: str, value: float) -> None:
    got = {s.slot: s.value for s in extract_slots(text, lang)}
    assert got.get(slot) == pytest.approx(value, rel=0.02), got


def test_ages_are_not_durations_and_pregnancy_is_not_age() -> None:
    assert "duration_hours" not in {s.slot for s in extract_slots("my 3-year-old son", "en")}
    assert "age_years" not in {s.slot for s in extract_slots("孩子咳嗽了2个月", "zh")}
    assert "duration_hours" not in {s.slot for s in extract_slots("怀孕20周", "zh")}


@pytest.mark.parametrize(
    ("lang", "text", "value"), [("zh", "七", 7), ("zh", "大概六分吧", 6), ("en", "about 6", 6), ("en", "eight", 8)]
)
def test_bare_number_answers(lang: str, text: str, value: float) -> None:
    assert bare_number(text, lang) == value


FINDINGS = [
    # (lang, text, finding, present)
    ("zh", "我喘不上气", "breathless", True),
    ("zh", "心口疼", "chest_pain", True),
    ("zh", "胸口憋得慌", "chest_pain", True),
    ("zh", "不发烧", "fever", False),
    ("zh", "没有咳嗽", "cough", False),
    ("zh", "没发烧也没咳嗽", "cough", False),
    ("zh", "没有发烧、咳嗽、流鼻涕", "runny_nose", False),
    ("zh", "不发烧，但是咳嗽", "cough", True),
    ("zh", "吃不下饭，肚子疼", "abdominal_pain", True),
    ("zh", "我不知道是不是发烧", "fever", True),
    ("zh", "拉肚子", "diarrhoea", True),
    ("zh", "头晕眼花", "dizziness", True),
    ("zh", "嘴唇也不肿", "lip_tongue_swelling", None),
    ("zh", "说话不清楚", "slurred_speech", True),
    ("zh", "小腿肚子疼", "calf_pain", True),
    ("en", "I have a tummy ache", "abdominal_pain", True),
    ("en", "I've got the runs", "diarrhoea", True),
    ("en", "I can't catch my breath", "breathless", True),
    ("en", "no fever", "fever", False),
    ("en", "she denies chest pain, nausea or vomiting", "vomiting", False),
    ("en", "no cough but a high temperature", "fever", True),
    ("en", "no cough but a high temperature", "cough", False),
    ("en", "I can't stop vomiting", "vomiting", True),
    ("en", "I'm not sure but I think I have a fever", "fever", True),
    ("en", "he's afebrile", "fever", False),
    ("en", "hay fever", "fever", None),
    ("en", "the fever went away yesterday", "fever", False),
    ("en", "non-productive cough", "productive_sputum", False),
    ("en", "my calf is not sore", "calf_pain", None),
    ("en", "I feel lightheaded", "dizziness", True),
    ("en", "I've never had chest pain like this before", "chest_pain", True),
    ("en", "nothing helps my chest pain", "chest_pain", True),
    ("en", "I've never had asthma", "chronic_lung", False),
    ("zh", "胸口从来没这么疼过", "chest_pain", True),
    ("en", "I don't have a fever", "fever", False),
    ("en", "she hasn't had any vomiting", "vomiting", False),
    ("en", "no fever, has a cough", "cough", True),
    ("en", "no fever and he is coughing", "cough", True),
    ("zh", "手心脚心特别痒", "itching", True),
]


@pytest.mark.parametrize(("lang", "text", "finding", "present"), FINDINGS)
def test_findings_and_negation(lang: str, text: str, finding: str, present: bool | None) -> None:
    found = extractor(lang).extract(text).findings()
    if present is None:
        assert finding not in found or not found[finding].present
    else:
        assert finding in found, found
        assert found[finding].present is present


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("我屋里伢子八个月，今天一上午冇得尿", {"child"}, set()),
        ("佢头好痛，冇发烧", {"headache"}, {"fever"}),
        ("俺脑壳疼，莫得发烧", {"headache"}, {"fever"}),
    ],
)
def test_regional_words_read_as_their_standard_form(text: str, present: set[str], absent: set[str]) -> None:
    """prompts/zh/lexicon.yaml `regional`: 冇 is 没, 伢子 is 孩子, 脑壳 is 头, before any phrase is matched."""
    found = extractor("zh").extract(text).findings()
    assert present <= {f for f, m in found.items() if m.present}, found
    assert absent <= {f for f, m in found.items() if not m.present}, found
    assert extractor("zh").normalise("冇得尿") == "没有尿"
