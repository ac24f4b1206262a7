"""Numeric slots from one utterance: temperature, age, duration, pain score, pregnancy weeks,
blood sugar, blood pressure, oxygen saturation, episodes per day. Text is number-normalised first
(the language pack's `read_numbers`), so every pattern here sees digits."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from voice.languages import languages

SLOTS = (
    "temp_c",
    "age_years",
    "duration_hours",
    "pain_score",
    "pregnancy_weeks",
    "glucose_mmol",
    "bp_systolic",
    "spo2",
    "episodes_per_day",
)

_NUM = r"(\d+(?:\.\d+)?)"


@dataclass(frozen=True, slots=True)
class SlotValue:
    slot: str
    value: float
    span: str


def _temp(v: float, unit: str | None) -> float | None:
    if unit == "f" or (unit is None and 93 <= v <= 110):
        c = (v - 32) * 5 / 9
        return round(c, 1) if 34 <= c <= 44 else None
    if 34 <= v <= 44:
        return v
    return None


_EN_UNIT_H = {
    "minute": 1 / 60,
    "min": 1 / 60,
    "hour": 1,
    "hr": 1,
    "day": 24,
    "night": 24,
    "week": 168,
    "fortnight": 336,
    "month": 730,
    "year": 8760,
}
_ZH_UNIT_H = {
    "分钟": 1 / 60,
    "小时": 1,
    "钟头": 1,
    "天": 24,
    "日": 24,
    "晚": 24,
    "夜": 24,
    "礼拜": 168,
    "星期": 168,
    "周": 168,
    "个月": 730,
    "月": 730,
    "年": 8760,
}
_EN_RELATIVE = [
    (r"\b(?:the )?(?:past|last) (?:few )?months?\b", 730),
    (r"\b(?:the )?(?:past|last) (?:few )?weeks?\b", 168),
    (r"\b(?:the )?(?:past|last) (?:few )?years?\b", 8760),
    (r"\b(?:the )?(?:past|last) fortnight\b", 336),
    (r"\bsince yesterday\b|\byesterday\b", 24),
    (r"\blast night\b|\bovernight\b", 12),
    (r"\bthis morning\b|\bsince morning\b|\bearlier today\b", 6),
    (r"\bsince last week\b|\blast week\b", 168),
    (r"\bjust now\b|\bjust started\b|\bminutes ago\b|\ba moment ago\b", 0.25),
    (r"\bthe day before yesterday\b", 48),
    (r"\ball day\b|\btoday\b", 8),
    (r"\blast month\b", 730),
]
_ZH_RELATIVE = [
    (r"前天", 48),
    (r"昨天|昨日", 24),
    (r"昨晚|昨天晚上|昨夜|半夜|夜里", 12),
    (r"今天早上|今早|早上起来|今天上午", 6),
    (r"刚才|刚刚|刚开始|突然", 0.25),
    (r"上周|上个礼拜|上个星期|上礼拜", 168),
    (r"半天", 12),
    (r"上个月", 730),
    (r"今天|一整天", 8),
]


def extract_slots(text: str, lang: str) -> list[SlotValue]:
    pack = languages.or_fallback(lang)
    out: list[SlotValue] = []
    _RULES[pack.rules](pack.read_numbers(text), out)
    return out


def _in_pregnancy(span: str, out: list[SlotValue]) -> bool:
    return any(s.slot == "pregnancy_weeks" and span.strip() in s.span for s in out)


def _in_age(span: str, out: list[SlotValue]) -> bool:
    return any(s.slot == "age_years" and span.strip() in s.span for s in out)


def _add(out: list[SlotValue], slot: str, value: float | None, span: str) -> None:
    if value is not None and not any(s.slot == slot for s in out):
        out.append(SlotValue(slot, float(value), span))


def _en(t: str, out: list[SlotValue]) -> None:
    low = t.lower()
    # temperature
    for m in re.finditer(
        _NUM + r"\s*(?:°|º|degrees?|deg)?\s*(f|fahrenheit|c|celsius|centigrade)\b|" + _NUM + r"\s*℃", low
    ):
        if m.group(1):
            _add(out, "temp_c", _temp(float(m.group(1)), m.group(2)[0]), m.group(0))
        else:
            _add(out, "temp_c", _temp(float(m.group(3)), "c"), m.group(0))
    for m in re.finditer(r"(?:temperature|temp|fevers?|febrile|thermometer)[^.;]{0,25}?" + _NUM, low):
        _add(out, "temp_c", _temp(float(m.group(1)), None), m.group(0))
    for m in re.finditer(_NUM + r"\s*(?:°|degrees?)", low):
        _add(out, "temp_c", _temp(float(m.group(1)), None), m.group(0))
    # age
    # "6 weeks old", "a six-week-old", "a month and a half old", "just over a month old" (numbers are digits
    # by now: "a few weeks" reads as 3, "a couple of" as 2)
    for m in re.finditer(
        _NUM + r"[\s-]*(year|yr|month|week|fortnight|day)s?(?:\s+and\s+(?:a\s+)?(half))?[\s-]*old\b", low
    ):
        unit = {"year": 1, "yr": 1, "month": 1 / 12, "week": 1 / 52, "fortnight": 1 / 26, "day": 1 / 365}[m.group(2)]
        _add(out, "age_years", (float(m.group(1)) + (0.5 if m.group(3) else 0)) * unit, m.group(0))
    for m in re.finditer(
        r"\b(?:aged?|age of|i am|i'm|im|she is|he is|she's|he's)\s+"
        + _NUM
        + r"(?:\s*(?:years?|yrs?))?\b(?!\s*(?:weeks|months|days|hours|degrees|°|%|kg|lb|pounds|times|out|/))",
        low,
    ):
        v = float(m.group(1))
        if 1 <= v <= 115:
            _add(out, "age_years", v, m.group(0))
    for m in re.finditer(r"\b" + _NUM + r"\s*(?:yo|y/o|yrs? old)\b", low):
        _add(out, "age_years", float(m.group(1)), m.group(0))
    if re.search(r"\bnew[\s-]?born\b", low):
        _add(out, "age_years", 0.02, "newborn")
    # pregnancy
    for m in re.finditer(
        _NUM + r"\s*weeks?\s*(?:pregnant|gestation|along|of pregnancy)|pregnant[^.;]{0,20}?" + _NUM + r"\s*weeks", low
    ):
        _add(out, "pregnancy_weeks", float(m.group(1) or m.group(2)), m.group(0))
    for m in re.finditer(
        r"\b(?:i'?m|she'?s|i am|she is|at)\s+"
        + _NUM
        + r"\s*weeks\b(?!\s*(?:old|ago|into|in|of|since|after|now|with|post))",
        low,
    ):
        _add(out, "pregnancy_weeks", float(m.group(1)), m.group(0))
    for m in re.finditer(_NUM + r"\s*months?\s*pregnant", low):
        _add(out, "pregnancy_weeks", round(float(m.group(1)) * 4.3), m.group(0))
    # pain score
    for m in re.finditer(r"\b" + _NUM + r"\s*(?:/|out of)\s*10\b", low):
        if float(m.group(1)) <= 10:
            _add(out, "pain_score", float(m.group(1)), m.group(0))
    for m in re.finditer(
        r"pain(?: score| level)?\s*(?:is|of|at|about|around|was)?\s*(?:a\s+)?"
        + _NUM
        + r"\b(?!\s*(?:days?|hours?|weeks?|%))",
        low,
    ):
        if float(m.group(1)) <= 10:
            _add(out, "pain_score", float(m.group(1)), m.group(0))
    # blood sugar, blood pressure, saturation
    for m in re.finditer(r"(?:blood sugar|blood glucose|glucose|sugar(?: level| reading)?)[^.;]{0,20}?" + _NUM, low):
        v = float(m.group(1))
        _add(out, "glucose_mmol", round(v / 18, 1) if v > 40 else v, m.group(0))
    for m in re.finditer(
        r"(?:blood pressure|bp)[^.;]{0,20}?(\d{2,3})\s*(?:/|over)\s*(\d{2,3})"
        r"|(\d{2,3})\s*(?:/|over)\s*(\d{2,3})\s*(?:mm\s*hg|mmhg)",
        low,
    ):
        _add(out, "bp_systolic", float(m.group(1) or m.group(3)), m.group(0))
    for m in re.finditer(
        r"(?:oxygen saturation|saturation|sats?|spo2|o2|oxygen level|oxygen|pulse ox\w*)"
        r"[^.;]{0,20}?(\d{2,3})\s*(?:%|percent)",
        low,
    ):
        if 50 <= float(m.group(1)) <= 100:
            _add(out, "spo2", float(m.group(1)), m.group(0))
    # a reading said without "%": "my oxygen reading says 84", "sats are 88"
    for m in re.finditer(
        r"\b(?:oxygen|sats|saturations?|spo2|pulse ox\w*)\b[^.;,\d]{0,40}?\b(\d{2,3})\b"
        r"(?!\s*(?:%|percent|bpm|beats|/))",
        low,
    ):
        if 50 <= float(m.group(1)) <= 100:
            _add(out, "spo2", float(m.group(1)), m.group(0))
    for m in re.finditer(
        _NUM
        + r"\s*times\s*(?:per|in a|a|every)\s*day|"
        + _NUM
        + r"\s*(?:episodes|stools|bowel movements)\s*(?:per|a|in)\s*(?:day|24)",
        low,
    ):
        _add(out, "episodes_per_day", float(m.group(1) or m.group(2)), m.group(0))
    # duration: first mention wins
    for m in re.finditer(
        _NUM
        + r"[\s-]*(minute|min|hour|hr|day|night|week|fortnight|month|year)s?(?:'|’)?\b(?![\s-]*old)"
        + r"(?!\s*(?:pregnant|along|of pregnancy|gestation))",
        low,
    ):
        pre = low[max(0, m.start() - 12) : m.start()]
        if re.search(r"(?:per|every|each|times)\s*$", pre) or _in_pregnancy(m.group(0), out):
            continue
        if _in_age(m.group(0), out):
            continue
        _add(out, "duration_hours", float(m.group(1)) * _EN_UNIT_H[m.group(2)], m.group(0))
        break
    if not any(s.slot == "duration_hours" for s in out):
        for pattern, hours in _EN_RELATIVE:
            m = re.search(pattern, low)
            if m:
                _add(out, "duration_hours", hours, m.group(0))
                break


def _zh(t: str, out: list[SlotValue]) -> None:
    # temperature: 38度5, 38.5度, 38.5℃, 体温38.5, 烧到39
    for m in re.finditer(r"(\d{2})\s*度\s*(\d)(?!\d)", t):
        _add(out, "temp_c", _temp(float(f"{m.group(1)}.{m.group(2)}"), "c"), m.group(0))
    for m in re.finditer(_NUM + r"\s*(?:度|℃|°C|°c|摄氏度)", t):
        _add(out, "temp_c", _temp(float(m.group(1)), None), m.group(0))
    for m in re.finditer(r"(?:体温|发烧|发热|烧到|烧了|温度|高烧|低烧)[^，。；,]{0,6}?" + _NUM, t):
        _add(out, "temp_c", _temp(float(m.group(1)), None), m.group(0))
    for m in re.finditer(_NUM + r"\s*(?:华氏度|华氏|°F|F)", t):
        _add(out, "temp_c", _temp(float(m.group(1)), "f"), m.group(0))
    # age
    for m in re.finditer(_NUM + r"\s*多?\s*(周岁|岁半|岁)", t):
        _add(out, "age_years", float(m.group(1)) + (0.5 if m.group(2) == "岁半" else 0), m.group(0))
    # an age said loosely: 一个多月 (1-2 months: 1.5), 两个来月 (about 2), 二十来天, 1个半月; 不到两个月 is under 2
    # 大 as "old", not the first character of a word (这几天大便有点干: "these days the stool", not "3 days old")
    old = r"(?:大(?![便概小量家人多半部声口])|的(?:宝宝|孩子|婴儿|小孩|娃|儿子|女儿|小宝宝|新生儿|小婴儿))"
    for m in re.finditer(_ZH_LOOSE_AGE + r"\s*" + old, t):
        _add(out, "age_years", _zh_loose_age(m), m.group(0))
    for m in re.finditer(
        r"(?:宝宝|婴儿|孩子|小孩|儿子|女儿|娃|新生儿)(?:才|刚|今年|现在|刚满|满|出生|刚出生)?(?:不到|还不到|没满|才)?"
        + _ZH_LOOSE_AGE.replace("(个月|月|周|天|礼拜|星期)", "(个月|月|周|天|礼拜|星期|岁)"),
        t,
    ):
        _add(out, "age_years", _zh_loose_age(m), m.group(0))
    for m in re.finditer(r"出生\s*(?:才|刚|不到)?" + _ZH_LOOSE_AGE, t):
        _add(out, "age_years", _zh_loose_age(m), m.group(0))
    if re.search(r"刚出生|新生儿|满月", t):
        _add(out, "age_years", 0.05, "新生儿")
    # pregnancy
    for m in re.finditer(r"(?:孕妇|孕期|怀孕了?)[，,\s]*(?:已经|现在)?(\d+)\s*(?:周|个?星期)", t):
        _add(out, "pregnancy_weeks", float(m.group(1)), m.group(0))
    for m in re.finditer(
        r"(?:怀孕|孕|怀了|妊娠)\s*(?:已经|快|差不多)?\s*" + _NUM + r"\s*(周|个?星期|个?礼拜|个?月)", t
    ):
        v = float(m.group(1)) * (4.3 if "月" in m.group(2) else 1)
        _add(out, "pregnancy_weeks", round(v), m.group(0))
    # pain score
    for m in re.finditer(
        r"(\d{1,2})\s*/\s*10|(?:疼|痛|打|给)[^，。；]{0,6}?(\d{1,2}(?:\.\d)?)\s*分|(\d{1,2})\s*分(?:的)?(?:疼|痛)", t
    ):
        v = float(m.group(1) or m.group(2) or m.group(3))
        if v <= 10:
            _add(out, "pain_score", v, m.group(0))
    # blood sugar, pressure, saturation
    for m in re.finditer(r"血糖[^，。；]{0,8}?" + _NUM, t):
        v = float(m.group(1))
        _add(out, "glucose_mmol", round(v / 18, 1) if v > 40 else v, m.group(0))
    for m in re.finditer(r"(?:血压|高压)[^，。；]{0,6}?(\d{2,3})", t):
        _add(out, "bp_systolic", float(m.group(1)), m.group(0))
    for m in re.finditer(r"血氧(?:饱和度)?[^，。；]{0,6}?(\d{2,3})", t):
        if 50 <= float(m.group(1)) <= 100:
            _add(out, "spo2", float(m.group(1)), m.group(0))
    for m in re.finditer(
        r"(?:1天|一天|每天|每日|1日|今天|1上午|一上午|1晚上|一晚上|1个晚上|一个晚上)[^，。；]{0,6}?(\d+)\s*(?:次|回|趟)",
        t,
    ):
        _add(out, "episodes_per_day", float(m.group(1)), m.group(0))
    # duration
    for m in re.finditer(
        _NUM
        + r"\s*(?:多)?\s*(个多?\s*)?(分钟|小时|钟头|天|日|晚|夜|礼拜|星期|周|个月|月|年)"
        + r"(?!大|的(?:宝宝|孩子|婴儿|小孩|娃))",
        t,
    ):
        if _in_pregnancy(m.group(0), out) or _in_age(m.group(0), out) or re.match(r"\s*一次", t[m.end() :]):
            continue
        pre = t[max(0, m.start() - 3) : m.start()]
        if re.search(r"(?:怀孕|孕|怀了|妊娠|一天|每天|1天)\s*$", pre) or re.match(r"\s*(?:次|回|趟)", t[m.end() :]):
            continue
        unit = m.group(3)
        if unit == "月" and not m.group(2):
            unit = "个月"
        _add(out, "duration_hours", float(m.group(1)) * _ZH_UNIT_H[unit], m.group(0))
        break
    if not any(s.slot == "duration_hours" for s in out):
        for pattern, hours in _ZH_RELATIVE:
            m = re.search(pattern, t)
            if m:
                _add(out, "duration_hours", hours, m.group(0))
                break


# NUM, then 个 / 多 / 来 / 半 in any of their places, then the unit: 1个多月, 2个来月, 20来天, 1个半月, 3周多
_ZH_LOOSE_AGE = r"(\d+(?:\.\d+)?)\s*(个)?\s*(多|来|半)?\s*(个月|月|周|天|礼拜|星期)(多)?"
_ZH_AGE_UNIT = {"个月": 1 / 12, "月": 1 / 12, "周": 1 / 52, "礼拜": 1 / 52, "星期": 1 / 52, "天": 1 / 365, "岁": 1.0}


def _zh_loose_age(m: re.Match[str]) -> float | None:
    """Years from a _ZH_LOOSE_AGE match; "多" (more than) reads as half a unit more, "不到" (under) half less."""
    n, unit = float(m.group(1)), m.group(4)
    if unit == "月" and not m.group(2) and m.group(3) != "半":
        return None  # 3月 is March, not three months
    if m.group(3) == "半":
        n += 0.5
    elif m.group(3) == "多" or m.group(5):
        n += 0.5
    if re.search(r"(?:不到|没满)\s*$", m.string[max(0, m.start() - 3) : m.start(1)]):
        n -= 0.5
    return n * _ZH_AGE_UNIT[unit]


_BARE_NUMBER = re.compile(r"^\D{0,12}?(\d+(?:\.\d+)?)\D{0,12}$")


def bare_number(text: str, lang: str) -> float | None:
    """A short answer that is just a number ("七", "about 6", "8分"), for number/scale questions."""
    m = _BARE_NUMBER.match(languages.or_fallback(lang).read_numbers(text).strip())
    return float(m.group(1)) if m else None


_AGE_UNITS = (
    (re.compile(r"个?月|month", re.IGNORECASE), 1 / 12),
    (re.compile(r"周|星期|礼拜|week", re.IGNORECASE), 1 / 52),
    (re.compile(r"天|day", re.IGNORECASE), 1 / 365),
)


def age_answer(text: str, lang: str) -> float | None:
    """An answer to "how old is ...?": "两个月" → 0.17 years, "6 weeks" → 0.12, "七岁" / "seven" → 7."""
    for s in extract_slots(text, lang):
        if s.slot == "age_years":
            return s.value
    n = bare_number(text, lang)
    if n is None:
        return None
    for rx, factor in _AGE_UNITS:
        if rx.search(text):
            return n * factor
    return n


def slot_answer(slot: str, text: str, lang: str) -> float | None:
    """The answer to a question about `slot`: what the slot patterns find, else a bare number read in
    the slot's unit ("101" for a temperature is Fahrenheit, "两个月" for an age is 0.17 years)."""
    if slot == "age_years":
        return age_answer(text, lang)
    for s in extract_slots(text, lang):
        if s.slot == slot:
            return s.value
    n = bare_number(text, lang)
    if n is None:
        return None
    if slot == "temp_c":
        return _temp(n, None)
    if slot == "glucose_mmol" and n > 40:
        return round(n / 18, 1)
    if slot == "pain_score" and n > 10:
        return None
    return n


_RULES: dict[str, Callable[[str, list[SlotValue]], None]] = {"zh": _zh, "en": _en}  # by LanguagePack.rules
