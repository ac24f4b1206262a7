"""Numbers as callers say them: Chinese numerals (三十八, 两, 半), English number words, digits.

`normalise_numbers(text, lang)` rewrites spoken numbers as digits so that the slot patterns in
`dialogue.slots` only ever see digits: "三十八度三" → "38度3", "two weeks" → "2 weeks"."""

from __future__ import annotations

import re

_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_NUM_RE = re.compile(r"[零〇一二两俩三四五六七八九十百千]+(?:点[零〇一二三四五六七八九]+)?")

# Words that contain numeral characters but are not numbers.
_ZH_NOT_NUMBERS = (
    "一下",
    "一直",
    "一阵",
    "一样",
    "一些",
    "一点",
    "一起",
    "一边",
    "一侧",
    "一会",
    "一般",
    "一定",
    "一旦",
    "一切",
    "一口",
    "一动",
    "一吃",
    "一喝",
    "一躺",
    "一站",
    "一走",
    "一咳",
    "一用",
    "一按",
    "一碰",
    "一抬",
    "一弯",
    "一吸",
    "一呼",
    "一天到晚",
    "万一",
    "统一",
    "唯一",
    "十分",
    "三高",
    "一身",
    "一阵阵",
    "一下子",
    "第一",
    "一次性",
    "一会儿",
    "一整",
    "一跳",
    "一百个",
    "二便",
    "一个劲",
    "七上八下",
    "乱七八糟",
    "三番五次",
    "一模",
    "不一",
    "一过性",
    "一时",
    "一开始",
    "一晚上",
    "一晚",
    "一早",
    "一夜",
    "一路",
    "一半",
)

_EN_UNITS = {
    "zero": 0,
    "one": 1,
    "a": 1,
    "an": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "couple": 2,
    "few": 3,
    "several": 3,
}
_EN_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_WORD_RE = re.compile(
    r"\b(?:(?P<tens>twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-](?P<unit1>one|two|three|four|five|six|seven|eight|nine))?"
    r"|(?P<unit>zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen))"
    r"(?:\s+hundred(?:\s+and)?(?:\s+(?P<rest>\w+))?)?\b",
    re.IGNORECASE,
)
# "a couple of days", "a few weeks", "several hours", "a day", "an hour": quantity words before a time unit.
_EN_QUANT_RE = re.compile(
    r"\b(?:a\s+couple\s+of|a\s+few|several|couple\s+of|a|an)\s+(?=(?:day|week|month|year|hour|minute|"
    r"fortnight|night)s?\b)",
    re.IGNORECASE,
)


def zh_to_int(s: str) -> int | None:
    """三十八 → 38, 两 → 2, 一百零一 → 101, 十二 → 12, 二零二四 → 2024 (digit string). None if not a number."""
    if not s:
        return None
    if all(c in _ZH_DIGITS for c in s):
        if len(s) == 1:
            return _ZH_DIGITS[s]
        return int("".join(str(_ZH_DIGITS[c]) for c in s))
    total, current = 0, 0
    for c in s:
        if c in _ZH_DIGITS:
            current = _ZH_DIGITS[c]
        elif c in _ZH_UNITS:
            unit = _ZH_UNITS[c]
            total += (current or 1) * unit
            current = 0
        else:
            return None
    return total + current


def _zh_number(s: str) -> str | None:
    if "点" in s:
        whole, frac = s.split("点", 1)
        w = zh_to_int(whole)
        if w is None:
            return None
        return f"{w}.{''.join(str(_ZH_DIGITS[c]) for c in frac)}"
    n = zh_to_int(s)
    return None if n is None else str(n)


def normalise_zh(text: str) -> str:
    # protect idioms that contain numeral characters
    protected: dict[str, str] = {}
    for i, word in enumerate(sorted(_ZH_NOT_NUMBERS, key=len, reverse=True)):
        if word in text:
            key = f"\x00{i}\x01"
            protected[key] = word
            text = text.replace(word, key)
    text = text.replace("半个", "0.5个").replace("个半", ".5个")
    # 两三天, 七八个小时: a spoken range, keep its upper end
    text = re.sub(r"([一二两三四五六七八])([二三四五六七八九])(?=[天个周年月小分次岁星礼])", r"\2", text)
    # 好几天, 几个礼拜: "several" time units, read as three (never 十几, 二十几)
    text = re.sub(r"(?<![一二两三四五六七八九十百\d])好?几(?=个?(?:天|礼拜|星期|周|月|年|小时))", "三", text)

    def repl(m: re.Match[str]) -> str:
        out = _zh_number(m.group(0))
        return out if out is not None else m.group(0)

    text = _ZH_NUM_RE.sub(repl, text)
    # "1个.5月" produced by "一个半月" → "1.5个月"
    text = re.sub(r"(\d+)个\.5", r"\1.5个", text)
    text = re.sub(r"(\d+)\.5个\.5", r"\1.5个", text)
    # full-width digits
    text = text.translate(str.maketrans("０１２３４５６７８９．％", "0123456789.%"))
    for key, word in protected.items():
        text = text.replace(key, word)
    return text


def normalise_en(text: str) -> str:
    text = re.sub(r"\b(times|twice|once)\s+an?\s+(day|week|hour|night)", r"\1 per \2", text, flags=re.IGNORECASE)
    text = re.sub(r"\bhalf\s+(?:a|an)\s+(?=hour|day)", "0.5 ", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(?:a|an|one)\s+and\s+a\s+half\s+", "1.5 ", text, flags=re.IGNORECASE)
    text = _EN_QUANT_RE.sub(
        lambda m: (
            f"{_EN_UNITS.get(m.group(0).split()[-1].lower(), 1)} "
            if m.group(0).split()[-1].lower() not in ("of",)
            else "2 "
        ),
        text,
    )

    def repl(m: re.Match[str]) -> str:
        if m.group("tens"):
            n = _EN_TENS[m.group("tens").lower()] + (_EN_UNITS[m.group("unit1").lower()] if m.group("unit1") else 0)
        else:
            n = _EN_UNITS[m.group("unit").lower()]
        if "hundred" in m.group(0).lower():
            rest = m.group("rest")
            extra = 0
            if rest:
                extra = _EN_UNITS.get(rest.lower(), _EN_TENS.get(rest.lower(), 0))
            n = n * 100 + extra
        return str(n)

    text = re.sub(r"\ban?\s+(?=hundred\b)", "one ", text, flags=re.IGNORECASE)  # "a hundred and one" (°F)
    text = _EN_WORD_RE.sub(repl, text)
    text = re.sub(r"\b(\d+)\s+and\s+a\s+half\b", r"\1.5", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(\d+)\s+(?:point|dot)\s+(\d)\b", r"\1.\2", text, flags=re.IGNORECASE)
    return text


def normalise_numbers(text: str, lang: str) -> str:
    return normalise_zh(text) if lang == "zh" else normalise_en(text)
