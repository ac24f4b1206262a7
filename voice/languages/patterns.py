"""Patterns the text normalisers of every language share (voice.languages.<code>.normalize)."""

from __future__ import annotations

import re

NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
BP = re.compile(r"(?<![\d.])(\d{2,3})\s*/\s*(\d{2,3})(?![\d./])(\s*(?:mm\s?Hg|毫米汞柱))?", re.I)
TIME_HM = re.compile(r"(?<![\d.:])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])(\s*([ap])\.?\s?m\.?(?![a-z]))?", re.I)
TIME_AMPM = re.compile(r"(?<![\d.:])(1[0-2]|0?[1-9])\s*([ap])\.?\s?m\b\.?", re.I)
RANGE = re.compile(r"(?<![\d.])(\d+)\s*[-–~～]\s*(\d+)(?![\d.])")
# Phone numbers and IDs are read digit by digit; round amounts (10000) stay numbers.
LONG_DIGITS = re.compile(r"(?<![\d.])(\d{3,4}[- ]\d{3,4}[- ]\d{4}|\d{5,}(?<!000))(?![\d.])")
# Scores such as a pain scale: "7/10" (after blood pressure had its turn).
FRACTION = re.compile(r"(?<![\d.])(\d{1,3})\s*/\s*(\d{1,3})(?![\d./])")


def is_blood_pressure(sys_: int, dia: int) -> bool:
    # Plausible systolic/diastolic pairs only; "3/4" or "10/12" stay fractions or dates.
    return 60 <= sys_ <= 260 and 30 <= dia <= 160 and sys_ > dia
