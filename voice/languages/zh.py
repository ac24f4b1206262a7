"""Mandarin: numbers in hanzi, text as the Mandarin voice must say it (the Baker voice reads only
hanzi: digits, symbols and Latin letters become hanzi first), the recogniser's text made simplified
with Chinese punctuation, and the pack."""

from __future__ import annotations

import re

from voice.languages.pack import ClauseLengths, LanguagePack
from voice.languages.patterns import BP, FRACTION, LONG_DIGITS, NUM, RANGE, TIME_AMPM, TIME_HM, is_blood_pressure

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_PHONE_DIGITS = "零幺二三四五六七八九"  # 1 as 幺 when reading digits: the way 120 is said aloud
_ZH_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
# Measure words after which 2 is read 两 (两点, 两天, 两片), not 二.
_ZH_MEASURE = "点个天次片粒颗周年月岁小分秒毫公千克升瓶支袋杯口位种项下半遍"


def _zh_below_10000(n: int) -> str:
    out, zero_pending = [], False
    for value, name in _ZH_SMALL_UNITS:
        digit, n = divmod(n, value)
        if digit:
            if zero_pending:
                out.append("零")
            out.append(_ZH_DIGITS[digit] + name)
            zero_pending = False
        elif out:
            zero_pending = True
    if n:
        if zero_pending:
            out.append("零")
        out.append(_ZH_DIGITS[n])
    return "".join(out)


def zh_int(n: int) -> str:
    """Cardinal in hanzi: 120 → 一百二十, 15 → 十五 (not 一十五), 10086 → 一万零八十六."""
    if n < 0:
        return "负" + zh_int(-n)
    if n == 0:
        return "零"
    parts: list[str] = []
    for value, name in ((100_000_000, "亿"), (10_000, "万")):
        if n >= value:
            high, n = divmod(n, value)
            parts.append(zh_int(high) + name)
            if 0 < n < value // 10:
                parts.append("零")
    if n:
        parts.append(_zh_below_10000(n))
    text = "".join(parts)
    if text.startswith("一十"):
        return text[1:]  # 十五, not 一十五
    if text[:2] in ("二千", "二万", "二亿"):
        return "两" + text[1:]  # 两千, the spoken form
    return text


def zh_number(token: str) -> str:
    token = token.replace(",", "")
    sign = ""
    if token.startswith("-"):
        sign, token = "负", token[1:]
    whole, _, frac = token.partition(".")
    text = zh_int(int(whole or "0"))
    if frac:
        text += "点" + "".join(_ZH_DIGITS[int(d)] for d in frac)
    return sign + text


def zh_digits(token: str) -> str:
    return "".join(_ZH_PHONE_DIGITS[int(d)] for d in token if d.isdigit())



# --- text as the Mandarin voice must say it -----------------------------------------------------

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
    return "两" if n_text == "二" and following[:1] in _ZH_MEASURE else n_text


def _zh_temperature(value: str) -> str:
    whole, _, frac = value.partition(".")
    head = zh_int(int(whole)) + "度"
    if len(frac) == 1:
        return head + _ZH_DIGITS[int(frac)]  # 38.5 → 三十八度五, the way it is said
    if frac:
        return zh_int(int(whole)) + "点" + "".join(_ZH_DIGITS[int(d)] for d in frac) + "度"
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
    text = re.sub(r"(?<!\d)((?:19|20)\d\d)(?=\s*年)", lambda m: "".join(_ZH_DIGITS[int(d)] for d in m[1]), text)
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




def finish_transcript(text: str) -> str:
    """Whisper's Mandarin as the records keep it: simplified characters, Chinese punctuation."""
    from voice.asr_terms import fullwidth_punctuation, to_simplified  # opencc and pypinyin load only here

    return fullwidth_punctuation(to_simplified(text)) if text else text


# Characters that make an answer a number without digits ("三十八度", "两天", "半年").
NUMBER_WORDS = frozenset("零一二两三四五六七八九十百半几")

PACK = LanguagePack(
    code="zh", name="Mandarin", asr_code="zh", spaced=False, list_separator="、", sentence_end="。",
    emergency_number="120", tts_engines=("fastspeech2", "coqui"), clause_lengths=ClauseLengths(4, 10, 60),
    spell_int=zh_int, spell_number=zh_number, spell_digits=zh_digits, normalize=normalize,
    number_words=NUMBER_WORDS, finish_transcript=finish_transcript,
)
