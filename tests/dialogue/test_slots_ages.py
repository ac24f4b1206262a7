"""Ages said loosely (dialogue/slots.py): an infant's age in months, weeks or days, with 多 / 来 / 半 / 不到 or
"a few", "a couple of", "a fortnight", "a month and a half"; an age is not also a duration."""

from __future__ import annotations

import pytest

from dialogue.slots import extract_slots
from dialogue.triage import triage_text


def _age(text: str, lang: str) -> float | None:
    return next((s.value for s in extract_slots(text, lang) if s.slot == "age_years"), None)


@pytest.mark.parametrize(
    ("lang", "text", "months"),
    [
        ("zh", "宝宝才一个多月，发烧38度5", 1.5),
        ("zh", "两个来月的宝宝发烧了", 2.0),
        ("zh", "一个半月大的宝宝", 1.5),
        ("zh", "宝宝不到两个月", 1.5),
        ("zh", "宝宝出生二十来天，发烧", 20 / 30.4),
        ("zh", "宝宝才七周大", 7 / 4.33),
        ("zh", "宝宝3个月大", 3.0),
        ("en", "my baby is a few weeks old", 3 / 4.33),
        ("en", "she's a couple of weeks old", 2 / 4.33),
        ("en", "my son is a fortnight old", 2 / 4.33),
        ("en", "he's a month and a half old", 1.5),
        ("en", "my six-week-old is hot", 6 / 4.33),
    ],
)
def test_loose_infant_ages(lang: str, text: str, months: float) -> None:
    age = _age(text, lang)
    assert age is not None
    assert age * 12 == pytest.approx(months, abs=0.15)


@pytest.mark.parametrize(
    ("lang", "text"), [("zh", "宝宝才一个多月，发烧38度5"), ("en", "he's a month and a half old and has a cough")]
)
def test_an_age_is_not_a_duration(lang: str, text: str) -> None:
    assert not [s for s in extract_slots(text, lang) if s.slot == "duration_hours"]


def test_a_month_is_not_an_age_or_a_loose_month() -> None:
    assert _age("3月份开始咳嗽", "zh") is None
    assert _age("我发烧三个多月了", "zh") is None


@pytest.mark.parametrize("text", ["这几天大便有点干，肚子胀", "三天大概吃了两次药", "两周大量出汗"])
def test_da_starting_a_word_is_not_an_age(text: str) -> None:
    # 大便 (stool), 大概 (about), 大量 (a lot): "3 days" then a word, not "3 days old"
    assert _age(text, "zh") is None


@pytest.mark.parametrize(("lang", "text"), [("zh", "宝宝才一个多月，发烧38度5"), ("zh", "两个来月的宝宝发烧了，38度2")])
def test_fever_in_a_loosely_aged_young_infant_is_an_emergency(lang: str, text: str) -> None:
    r = triage_text(text, lang)
    assert "infant_fever" in r.red_flags


def test_oxygen_saturation_said_without_percent() -> None:
    spo2 = [s.value for s in extract_slots("my oxygen reading on the finger thing says 84", "en") if s.slot == "spo2"]
    assert spo2 == [84.0]
    assert not [s for s in extract_slots("my oxygen is fine, pulse 84 bpm", "en") if s.slot == "spo2"]
