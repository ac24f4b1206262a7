"""Mandarin numbers both ways: spelled in hanzi for the voice (`zh_int`, `zh_number`, `zh_digits`) and
read from what callers say into digits (`read_numbers`, `zh_to_int`), so that the dialogue's slot
patterns only ever see digits."""

from __future__ import annotations

import re

from voice.languages.numbers import spell_decimal

# --- spoken by the voice -------------------------------------------------------------------------

DIGITS = "零一二三四五六七八九"
_ZH_PHONE_DIGITS = "零幺二三四五六七八九"  # 1 as 幺 when reading digits: the way 120 is said aloud
_ZH_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
# Measure words after which 2 is read 两 (两点, 两天, 两片), not 二.
MEASURE_WORDS = "点个天次片粒颗周年月岁小分秒毫公千克升瓶支袋杯口位种项下半遍"


def _zh_below_10000(n: int) -> str:
    out, zero_pending = [], False
    for value, name in _ZH_SMALL_UNITS:
        digit, n = divmod(n, value)
        if digit:
            if zero_pending:
                out.append("零")
            out.append(DIGITS[digit] + name)
            zero_pending = False
        elif out:
            zero_pending = True
    if n:
        if zero_pending:
            out.append("零")
        out.append(DIGITS[n])
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
    return spell_decimal(token, spell_int=zh_int, digit_words=DIGITS, minus="负", point="点", joiner="")


def zh_digits(token: str) -> str:
    return "".join(_ZH_PHONE_DIGITS[int(d)] for d in token if d.isdigit())


# --- heard from callers --------------------------------------------------------------------------

_HEARD_DIGITS = {
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

def zh_to_int(s: str) -> int | None:
    """三十八 → 38, 两 → 2, 一百零一 → 101, 十二 → 12, 二零二四 → 2024 (digit string). None if not a number."""
    if not s:
        return None
    if all(c in _HEARD_DIGITS for c in s):
        if len(s) == 1:
            return _HEARD_DIGITS[s]
        return int("".join(str(_HEARD_DIGITS[c]) for c in s))
    total, current = 0, 0
    for c in s:
        if c in _HEARD_DIGITS:
            current = _HEARD_DIGITS[c]
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
        return f"{w}.{''.join(str(_HEARD_DIGITS[c]) for c in frac)}"
    n = zh_to_int(s)
    return None if n is None else str(n)


def read_numbers(text: str) -> str:
    """Numbers as callers say them, as digits: "三十八度三" → "38度3", "两三天" → "3天"."""
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
