"""Text as the English voice (Piper/espeak) must say it: numbers, temperatures, blood pressure, times,
units, abbreviations and phone numbers in words."""

from __future__ import annotations

import re

from voice.languages.en.numbers import en_digits, en_int, en_number, en_ordinal
from voice.languages.patterns import BP, FRACTION, LONG_DIGITS, NUM, RANGE, TIME_AMPM, TIME_HM, is_blood_pressure

_EN_ABBREV = {
    "CT": "C T", "ECG": "E C G", "EKG": "E K G", "ICU": "I C U", "ER": "E R", "MRI": "M R I",
    "IV": "I V", "BP": "blood pressure", "ED": "emergency department", "GP": "G P", "A&E": "A and E",
}
_EN_UNITS = {
    "mg": ("milligram", "milligrams"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"), "l": ("liter", "liters"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"), "mcg": ("microgram", "micrograms"),
    "mmHg": ("millimeter of mercury", "millimeters of mercury"), "bpm": ("beat per minute", "beats per minute"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
}
_EN_PHONE_CONTEXT = re.compile(r"\b(call|dial|ring|phone|number|line|at)\s+(\d{3})\b", re.I)


def _en_plural(value: str, one: str, many: str) -> str:
    return one if value in ("1", "1.0", "-1") else many


def normalize(text: str) -> str:
    text = text.replace("’", "'")

    def bp(m: re.Match[str]) -> str:
        s, d = int(m[1]), int(m[2])
        if not is_blood_pressure(s, d):
            return f"{en_int(s)} over {en_int(d)}" if m[3] else m[0]
        return f"{en_int(s)} over {en_int(d)}"

    text = BP.sub(bp, text)
    text = FRACTION.sub(lambda m: f"{en_int(int(m[1]))} out of {en_int(int(m[2]))}", text)
    text = re.sub(
        rf"(?<![\w.])({NUM})\s*(?:°\s*([CF])\b|℃|℉|degrees?\s+(Celsius|Fahrenheit|C|F)\b|degrees?\b)",
        lambda m: f"{en_number(m[1])} degrees" + {"C": " Celsius", "F": " Fahrenheit", "": ""}[
            ((m[2] or m[3] or ("C" if "℃" in m[0] else "F" if "℉" in m[0] else "")) or "")[:1].upper()
        ],
        text,
    )

    def clock(m: re.Match[str]) -> str:
        h, mins = int(m[1]), int(m[2])
        suffix = ""
        if m[4]:
            suffix = " A M" if m[4].lower() == "a" else " P M"
        elif h > 12:
            h, suffix = h - 12, " P M"
        elif h == 0:
            h, suffix = 12, " A M"
        spoken_min = "o'clock" if mins == 0 else (f"oh {en_int(mins)}" if mins < 10 else en_int(mins))
        if mins == 0 and suffix:
            return f"{en_int(h)}{suffix}"
        return f"{en_int(h)} {spoken_min}{suffix}"

    text = TIME_HM.sub(clock, text)
    text = TIME_AMPM.sub(lambda m: f"{en_int(int(m[1]))} {'A M' if m[2].lower() == 'a' else 'P M'}", text)
    text = re.sub(rf"(?<![\w.])({NUM})\s*%", lambda m: f"{en_number(m[1])} percent", text)

    def unit(m: re.Match[str]) -> str:
        one, many = _EN_UNITS[m[2]]
        return f"{en_number(m[1])} {_en_plural(m[1], one, many)}"

    units = "|".join(sorted(map(re.escape, _EN_UNITS), key=len, reverse=True))
    text = re.sub(rf"(?<![\w.])({NUM})\s*({units})\b", unit, text)
    text = LONG_DIGITS.sub(lambda m: en_digits(m[1]), text)
    text = _EN_PHONE_CONTEXT.sub(lambda m: f"{m[1]} {en_digits(m[2])}", text)
    text = re.sub(r"(?<![\w.])(911|999|112)(?![\d.])", lambda m: en_digits(m[1]), text)
    text = RANGE.sub(lambda m: f"{en_int(int(m[1]))} to {en_int(int(m[2]))}", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: en_ordinal(int(m[1])), text)
    text = re.sub(rf"(?<![\w.])-?{NUM}", lambda m: en_number(m[0]), text)
    abbrevs = "|".join(sorted(map(re.escape, _EN_ABBREV), key=len, reverse=True))
    # Case-sensitive on purpose: "ER" the department, never "er" the hesitation.
    text = re.sub(rf"(?<![A-Za-z])({abbrevs})(?![A-Za-z])", lambda m: _EN_ABBREV[m[1]], text)
    text = text.replace("&", " and ").replace("/", " or ").replace("+", " plus ")
    return re.sub(r"[ \t]{2,}", " ", text).strip()
