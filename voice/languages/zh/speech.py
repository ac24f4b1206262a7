"""Text as the Mandarin voice must say it. The Baker voice reads only hanzi: digits, symbols and Latin
letters become hanzi first (see voice.textnorm for why letters are spelled as patients hear them)."""

from __future__ import annotations

import re

from voice.languages.patterns import BP, FRACTION, LONG_DIGITS, NUM, RANGE, TIME_AMPM, TIME_HM, is_blood_pressure
from voice.languages.zh.numbers import DIGITS, MEASURE_WORDS, zh_digits, zh_int, zh_number

_ZH_ABBREV = {
    "ECG": "心电图", "EKG": "心电图", "ICU": "重症监护室", "ER": "急诊室", "MRI": "核磁共振",
    "BP": "血压", "IV": "静脉输液", "OK": "好的", "ok": "好的", "Ok": "好的",
}
# How Chinese speakers say Latin letters, in hanzi the Baker voice can read.
_ZH_LETTERS = {
    "A": "诶", "B": "必", "C": "西", "D": "迪", "E": "伊", "F": "艾弗", "G": "吉", "H": "艾尺", "I": "艾",
    "J": "杰", "K": "开", "L": "艾勒", "M": "艾姆", "N": "恩", "O": "欧", "P": "批", "Q": "丘", "R": "阿尔",
    "S": "艾斯", "T": "替", "U": "优", "V": "维", "W": "达布溜", "X": "艾克斯", "Y": "歪", "Z": "贼",
}
_ZH_UNITS = {
    "mmHg": "毫米汞柱", "mg": "毫克", "mcg": "微克", "kg": "公斤", "g": "克", "ml": "毫升", "mL": "毫升",
    "cm": "厘米", "mm": "毫米", "km": "公里", "bpm": "次每分钟", "次/分": "次每分钟", "°F": "华氏度",
    "℉": "华氏度", "°C": "摄氏度", "℃": "摄氏度", "L": "升", "l": "升",
}
_ZH_PHONE_CONTEXT = re.compile(r"(拨打|打|呼叫|叫|电话|号码|热线|致电)(\s*)(\d{3,})")


def _zh_two(n_text: str, following: str) -> str:
    """2 before a measure word is 两: 两点, 两天, 两片."""
    return "两" if n_text == "二" and following[:1] in MEASURE_WORDS else n_text


def _zh_temperature(value: str) -> str:
    whole, _, frac = value.partition(".")
    head = zh_int(int(whole)) + "度"
    if len(frac) == 1:
        return head + DIGITS[int(frac)]  # 38.5 → 三十八度五, the way it is said
    if frac:
        return zh_int(int(whole)) + "点" + "".join(DIGITS[int(d)] for d in frac) + "度"
    return head


def normalize(text: str) -> str:
    text = text.replace("：", ":") if re.search(r"\d：\d", text) else text

    def bp(m: re.Match[str]) -> str:
        s, d = int(m[1]), int(m[2])
        if not is_blood_pressure(s, d) and not m[3]:
            return m[0]
        return f"高压{zh_int(s)}，低压{zh_int(d)}"

    text = BP.sub(bp, text)
    text = FRACTION.sub(lambda m: f"{zh_int(int(m[2]))}分之{zh_int(int(m[1]))}", text)
    text = re.sub(r"(?<!\d)((?:19|20)\d\d)(?=\s*年)", lambda m: "".join(DIGITS[int(d)] for d in m[1]), text)
    text = re.sub(r"(\d{2,3}(?:\.\d+)?)\s*(?:°\s*C|℃|°|度)", lambda m: _zh_temperature(m[1]), text)
    text = re.sub(r"(\d{2,3}(?:\.\d+)?)\s*(?:°\s*F|℉)", lambda m: "华氏" + _zh_temperature(m[1]), text)

    def clock(m: re.Match[str]) -> str:
        h, mins = int(m[1]), int(m[2])
        prefix = ""
        if m[4]:
            prefix = "上午" if m[4].lower() == "a" else "下午"
            h = h - 12 if h > 12 else h
        hour = _zh_two(zh_int(h), "点")
        if mins == 0:
            return f"{prefix}{hour}点"
        if mins == 30:
            return f"{prefix}{hour}点半"
        return f"{prefix}{hour}点{'零' if mins < 10 else ''}{zh_int(mins)}分"

    text = TIME_HM.sub(clock, text)
    text = TIME_AMPM.sub(
        lambda m: ("上午" if m[2].lower() == "a" else "下午") + _zh_two(zh_int(int(m[1])), "点") + "点", text
    )
    text = re.sub(rf"({NUM})\s*[%％]", lambda m: "百分之" + zh_number(m[1]), text)
    text = _ZH_PHONE_CONTEXT.sub(lambda m: m[1] + zh_digits(m[3]), text)
    text = re.sub(r"(?<![\d.])(\d{3})(?=\s*急救)", lambda m: zh_digits(m[1]), text)
    text = LONG_DIGITS.sub(lambda m: zh_digits(m[1]), text)
    units = "|".join(sorted(map(re.escape, _ZH_UNITS), key=len, reverse=True))
    text = re.sub(rf"({NUM})\s*({units})(?![A-Za-z])", lambda m: zh_number(m[1]) + _ZH_UNITS[m[2]], text)
    text = RANGE.sub(lambda m: f"{zh_int(int(m[1]))}到{zh_int(int(m[2]))}", text)
    text = re.sub(rf"-?{NUM}", lambda m: _zh_two(zh_number(m[0]), text[m.end() : m.end() + 1]), text)
    abbrevs = "|".join(sorted(map(re.escape, _ZH_ABBREV), key=len, reverse=True))
    text = re.sub(rf"(?<![A-Za-z])({abbrevs})(?![A-Za-z])", lambda m: _ZH_ABBREV[m[1]], text)
    text = re.sub(r"[A-Za-z]", lambda m: _ZH_LETTERS[m[0].upper()], text)
    text = text.replace("/", "每").replace("+", "加").replace("&", "和")
    return re.sub(r"\s+", " ", text).strip()
