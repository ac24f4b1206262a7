"""What the voices are asked to say: tables per language, and clause splitting of streamed text."""

from __future__ import annotations

import pytest

from voice.languages.en.numbers import en_int
from voice.languages.zh.numbers import zh_int
from voice.textnorm import ClauseSplitter, normalize

EN = [
    ("Your temperature is 38.5°C.", "Your temperature is thirty-eight point five degrees Celsius."),
    ("It was 38.5 degrees", "It was thirty-eight point five degrees"),
    ("98.6°F is normal", "ninety-eight point six degrees Fahrenheit is normal"),
    ("BP 120/80", "blood pressure one hundred twenty over eighty"),
    ("120/80 mmHg", "one hundred twenty over eighty"),
    ("Rate your pain 7/10", "Rate your pain seven out of ten"),
    ("Come at 2 pm", "Come at two P M"),
    ("Come at 14:30", "Come at two thirty P M"),
    ("at 9:05 am", "at nine oh five A M"),
    ("at 10:00", "at ten o'clock"),
    ("Take 500 mg twice", "Take five hundred milligrams twice"),
    ("1 mg", "one milligram"),
    ("weight 70 kg, 5 ml, 3 cm", "weight seventy kilograms, five milliliters, three centimeters"),
    ("oxygen 95%", "oxygen ninety-five percent"),
    ("Go to the ER now", "Go to the E R now"),
    ("a CT and an ECG or EKG in the ICU", "a C T and an E C G or E K G in the I C U"),
    ("Call 911 now.", "Call nine one one now."),
    ("dial 120", "dial one two zero"),
    ("call 555-123-4567", "call five five five one two three four five six seven"),
    ("for 3-4 days", "for three to four days"),
    ("your 2nd dose", "your second dose"),
    ("about 1,500 steps", "about one thousand five hundred steps"),
]

ZH = [
    ("体温38.5度", "体温三十八度五"),
    ("体温38.5℃", "体温三十八度五"),
    ("烧到39°C", "烧到三十九度"),
    ("体温37.25度", "体温三十七点二五度"),
    ("血压120/80", "血压高压一百二十，低压八十"),
    ("血压140/90 mmHg", "血压高压一百四十，低压九十"),
    ("疼痛7/10", "疼痛十分之七"),
    ("下午2点来", "下午两点来"),
    ("14:30复诊", "十四点半复诊"),
    ("9:05吃药", "九点零五分吃药"),
    ("2 pm", "下午两点"),
    ("每次500mg", "每次五百毫克"),
    ("体重70kg", "体重七十公斤"),
    ("喝200ml水", "喝二百毫升水"),
    ("伤口3cm", "伤口三厘米"),
    ("血氧95%", "血氧百分之九十五"),
    ("心率90次/分", "心率九十次每分钟"),
    ("吃2片", "吃两片"),
    ("3-5天", "三到五天"),
    ("请立即拨打120", "请立即拨打幺二零"),
    ("打911", "打九幺幺"),
    ("电话13812345678", "电话幺三八幺二三四五六七八"),
    ("做个CT", "做个西替"),
    ("做B超和X光", "做必超和艾克斯光"),
    ("查ECG", "查心电图"),
    ("住ICU", "住重症监护室"),
    ("去ER", "去急诊室"),
    ("2024年", "二零二四年"),
    ("走了2000步", "走了两千步"),
    ("第15天", "第十五天"),
]


@pytest.mark.parametrize(("text", "spoken"), EN)
def test_english_table(text: str, spoken: str) -> None:
    assert normalize(text, "en") == spoken


@pytest.mark.parametrize(("text", "spoken"), ZH)
def test_mandarin_table(text: str, spoken: str) -> None:
    assert normalize(text, "zh") == spoken


def test_mandarin_output_has_nothing_the_voice_cannot_say() -> None:
    text = normalize("体温38.5℃，血压120/80，做CT和ECG，下午2:30到ER，吃500mg，拨打120，血氧95%。", "zh")
    assert not any(ch.isascii() and ch.isalnum() for ch in text), text


def test_ordinary_words_are_left_alone() -> None:
    assert normalize("Hello, how are you feeling today?", "en") == "Hello, how are you feeling today?"
    assert normalize("er, I think so", "en") == "er, I think so"  # hesitation, not the ER
    assert normalize("您好，请问哪里不舒服？", "zh") == "您好，请问哪里不舒服？"


@pytest.mark.parametrize(("n", "en", "zh"), [
    (0, "zero", "零"), (10, "ten", "十"), (15, "fifteen", "十五"), (21, "twenty-one", "二十一"),
    (105, "one hundred five", "一百零五"), (1005, "one thousand five", "一千零五"),
    (10086, "ten thousand eighty-six", "一万零八十六"), (120000, "one hundred twenty thousand", "十二万"),
])
def test_cardinals(n: int, en: str, zh: str) -> None:
    assert en_int(n) == en
    assert zh_int(n) == zh


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="fr"):
        normalize("bonjour", "fr")


# --- clause splitting ---------------------------------------------------------------------------


def feed(splitter: ClauseSplitter, deltas: list[str]) -> list[str]:
    out: list[str] = []
    for d in deltas:
        out += splitter.push(d)
    return out + splitter.flush()


def test_english_clauses_do_not_break_numbers_times_or_titles() -> None:
    deltas = ["Okay", ", I understand.", " Your temperature is 38", ".5 degrees, which", " is a fever",
              ", and Dr", ". Li will call you at 14", ":30 today", ". Please rest"]
    assert feed(ClauseSplitter("en"), deltas) == [
        "Okay, I understand.",
        "Your temperature is 38.5 degrees, which is a fever,",
        "and Dr. Li will call you at 14:30 today.",
        "Please rest",
    ]


def test_first_clause_goes_early_and_later_ones_wait_for_length() -> None:
    s = ClauseSplitter("en")
    assert s.push("I'm sorry to hear that, ") == ["I'm sorry to hear that,"]  # first: early at a comma
    assert s.push("first, ") == []  # later: a comma alone is too short a clause
    assert s.push("how long have you had the pain? ") == ["first, how long have you had the pain?"]


def test_mandarin_clauses_cut_at_fullwidth_punctuation_immediately() -> None:
    s = ClauseSplitter("zh")
    assert s.push("好的，我明白了。") == ["好的，我明白了。"]
    assert s.push("您的体温是38.5度，") == ["您的体温是38.5度，"]
    assert s.push("请多休息") == []
    assert s.flush() == ["请多休息"]


def test_text_without_punctuation_is_cut_at_max_length() -> None:
    s = ClauseSplitter("en", max_chars=30)
    out = s.push("word " * 20)
    assert out and all(len(c) <= 30 for c in out)


def test_punctuation_only_is_not_a_clause() -> None:
    s = ClauseSplitter("zh")
    assert s.push("。") == []
    assert s.flush() == []
