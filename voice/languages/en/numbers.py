"""English numbers both ways: spelled out for the voice (`en_int`, `en_ordinal`, `en_number`,
`en_digits`) and read from what callers say into digits (`read_numbers`)."""

from __future__ import annotations

import re

from voice.languages.numbers import spell_decimal

# --- spoken by the voice -------------------------------------------------------------------------

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}


def en_int(n: int) -> str:
    """Cardinal in words: 2024 → "two thousand twenty-four" (US style, no "and")."""
    if n < 0:
        return "minus " + en_int(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f"-{ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{ONES[hundreds]} hundred" + (f" {en_int(rest)}" if rest else "")
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
    return spell_decimal(token, spell_int=en_int, digit_words=ONES, minus="minus ", point=" point ", joiner=" ")


def en_digits(token: str) -> str:
    """Phone numbers digit by digit: 911 → "nine one one" (0 as "zero", clearer than "oh" on a phone)."""
    return " ".join(ONES[int(d)] for d in token if d.isdigit())


# --- heard from callers --------------------------------------------------------------------------

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
_DIGIT_WORDS = "one|two|three|four|five|six|seven|eight|nine"
_UNIT_WORDS = f"zero|{_DIGIT_WORDS}|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS_WORDS = "|".join(_EN_TENS)
_EN_WORD_RE = re.compile(
    rf"\b(?:(?P<tens>{_TENS_WORDS})(?:[\s-](?P<unit1>{_DIGIT_WORDS}))?|(?P<unit>{_UNIT_WORDS}))"
    # what follows "hundred" is part of the number only if it is a number word: "a hundred point five" is
    # 100.5 and "a hundred degrees" keeps its unit (both lost a word when any word was taken)
    rf"(?:\s+hundred(?:(?:\s+and)?\s+(?P<rest>(?:{_TENS_WORDS})(?:[\s-](?:{_DIGIT_WORDS})\b)?|{_UNIT_WORDS}))?)?\b",
    re.IGNORECASE,
)
# "a couple of days", "a few weeks", "several hours", "a day", "an hour": quantity words before a time unit.
_EN_QUANT_RE = re.compile(
    r"\b(?:a\s+couple\s+of|a\s+few|several|couple\s+of|a|an)\s+(?=(?:day|week|month|year|hour|minute|"
    r"fortnight|night)s?\b)",
    re.IGNORECASE,
)


def read_numbers(text: str) -> str:
    """Number words as digits: "thirty eight point five" → "38.5", "two weeks" → "2 weeks"."""
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
                tens, _, unit = rest.lower().replace("-", " ").partition(" ")
                extra = _EN_UNITS.get(tens, _EN_TENS.get(tens, 0)) + _EN_UNITS.get(unit.strip(), 0)
            n = n * 100 + extra
        return str(n)

    text = re.sub(r"\ban?\s+(?=hundred\b)", "one ", text, flags=re.IGNORECASE)  # "a hundred and one" (°F)
    text = _EN_WORD_RE.sub(repl, text)
    text = re.sub(r"\b(\d+)\s+and\s+a\s+half\b", r"\1.5", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(\d+)\s+(?:point|dot)\s+(\d)\b", r"\1.\2", text, flags=re.IGNORECASE)
    return text
