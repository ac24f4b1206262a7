"""The one way a decimal token ("-38.5", "1,000") is spelled: sign, whole part, then the fraction digit by
digit. Each language gives its words (`en.numbers.en_number`, `zh.numbers.zh_number`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def spell_decimal(token: str, *, spell_int: Callable[[int], str], digit_words: Sequence[str], minus: str,
                  point: str, joiner: str) -> str:
    token = token.replace(",", "")
    sign = ""
    if token.startswith("-"):
        sign, token = minus, token[1:]
    whole, _, frac = token.partition(".")
    words = spell_int(int(whole or "0"))
    if frac:
        words += point + joiner.join(digit_words[int(d)] for d in frac)
    return sign + words
