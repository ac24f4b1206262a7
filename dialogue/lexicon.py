"""The lexicon compiler: plain phrases a clinician can write (prompts/<lang>/lexicon.yaml) become the
patterns the extractor matches, so that nobody has to write a regular expression to add a symptom.

A phrase is words, matched whole:
- English words match their inflections ("vomit" → vomits, vomited, vomiting; "bruise" → bruised;
  "diarrhoea" and "diarrhea" are two phrases), a possessive or a filler between two words ("pain in
  chest" matches "pain in my chest"), curly or missing apostrophes ("can't" = "cant" = "can’t").
- `~` is a gap: up to three English words, or up to six Mandarin characters, never across a clause
  end and never across a negation ("calf is not sore" is not "calf ~ sore").
- A space inside a Mandarin phrase is a short gap for a degree or measure word ("头 晕" matches
  头有点晕, 头好晕).
- `#` is any number (digits, English or Chinese numerals with a measure word: 三片, 两次, thirty);
  `#10+` is a number of ten or more ("took #10+ ~ tablet" is an overdose, "took two tablets" is not).
- `re:` starts a regular expression: the escape hatch, for what words cannot say.
Negation and its scope, tense and intent are applied by the extractor (dialogue.extract, dialogue.temporal)
on top of every match, not written into phrases.

ASR tolerance (`AsrTolerance`): Mandarin text is compared in toneless pinyin with the lexicon's literal
phrases of three or more syllables (传不上气 → 喘不上气) when pypinyin is installed, except the words listed
in `asr_words`; an English word one edit away from a word of `asr_words` (seven letters or more, same first
letter) is read as that word (diarhoea → diarrhoea). English needs the list: one edit turns many real words
into others (drooping → dropping). A name of `asr_names` (medicines, devices) is also found where
recognition split it into ordinary words: one to four words whose letters sound the same (`sound_key`: a
consonant skeleton of four sounds or more) and number six or more ("war for in" → warfarin, "Ella Quiss" →
Eliquis, "river oxa ban" → rivaroxaban); a name is never made out of fewer letters."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Literal

from dialogue.protocols import ProtocolError
from voice.languages import languages

REGEX_PREFIX = "re:"
_EN_NEG = r"(?:not|no|never|without|isn'?t|wasn'?t|aren'?t|doesn'?t|don'?t|didn'?t|hasn'?t)\b"
EN_GAP = rf"\W+(?:(?!{_EN_NEG})[\w'’]+\W+){{0,3}}?"
ZH_GAP = r"[^，。；！？,.;!?\n不没无未]{0,6}?"
ZH_SHORT_GAP = r"[^，。；！？,.;!?\n不没无未]{0,3}?"
# words allowed between two words of an English phrase ("pain in (my) chest", "short of (my) breath")
_EN_FILLER = r"(?:(?:my|his|her|their|our|your|its|the|a|an|some|very|really|so|quite|bit|little|of|all)\W+){0,2}"
_EN_NUM_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|a couple of|several|many|"
    "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen|dozens|half"
)
_EN_NUM_10 = (
    r"(?:\d{2,}|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|"
    r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
    r"(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|"
    r"a hundred|hundreds|a dozen|dozens|a whole (?:bottle|box|packet|pack|strip))"
)
_EN_NUM = rf"(?:\d+(?:\.\d+)?|{_EN_NUM_WORDS}|{_EN_NUM_10})"
_ZH_DIGIT = "零一二两三四五六七八九十百几"
_ZH_MEASURE = "(?:个|次|回|片|粒|颗|盒|瓶|板|把|包|袋|支|天|周|顿|口|下|阵)?"
_ZH_NUM = rf"(?:\d+(?:\.\d+)?|[{_ZH_DIGIT}]+|半){_ZH_MEASURE}"
_ZH_NUM_10 = (
    rf"(?:\d{{2,}}|[一二两三四五六七八九几]?[十百][一二三四五六七八九几]?|好几十|几十|上百|一整?[瓶盒板]){_ZH_MEASURE}"
)
_PLAIN_ZH = re.compile(r"^[\u3400-\u9fff\w ~#+·]+$")
_PLAIN_EN = re.compile(r"^[A-Za-z0-9'’ ~#+\-]+$")


def alternation(patterns: Iterable[str]) -> str:
    """One regular expression matching any of `patterns`, each kept whole by its own group."""
    return "|".join(f"(?:{p})" for p in patterns)


class LexiconError(ProtocolError):
    """A lexicon phrase cannot be compiled; the message names the phrase."""


@dataclass(frozen=True, slots=True)
class Phrase:
    source: str  # as the clinician wrote it
    pattern: str  # the regular expression it compiles to
    literal: bool  # plain words only (no gap, number or regex): usable for ASR tolerance


def _zh_regex(body: str) -> str:
    return body.replace(" ~ ", ZH_GAP).replace("~", ZH_GAP)


def _en_regex(body: str) -> str:
    return body.replace(" ~ ", EN_GAP)


def _zh_words(p: str) -> Phrase:
    """Characters, unspaced: a space is a short gap for a degree or measure word."""
    parts: list[str] = []
    for tok in re.split(r"(~| |#10\+|#)", p.strip()):
        if tok == "~":
            parts.append(ZH_GAP)
        elif tok == " ":
            parts.append(ZH_SHORT_GAP)
        elif tok == "#10+":
            parts.append(_ZH_NUM_10)
        elif tok == "#":
            parts.append(_ZH_NUM)
        elif tok:
            parts.append(re.escape(tok))
    literal = not re.search(r"[~ #]", p.strip())
    return Phrase(p, "".join(parts), literal)


def _en_words(p: str) -> Phrase:
    """Spaced words with their inflections, a filler allowed between two of them."""
    words = p.strip().split()
    out: list[str] = []
    for i, w in enumerate(words):
        if w == "~":
            out.append(EN_GAP)
            continue
        if i and words[i - 1] != "~":
            out.append(r"\W+" + _EN_FILLER)
        if "-" in w:
            out.append(r"[- ]?".join(_en_word(x) for x in w.split("-")))
        else:
            out.append(_en_word(w))
    literal = not any(w in ("~",) or w.startswith("#") for w in words)
    return Phrase(p, "".join(out), literal)


def _zh_whole(body: str) -> re.Pattern[str]:
    return re.compile(body)  # no word boundaries in unspaced text


def _en_whole(body: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Grammar:
    """How one rule set (`voice.languages.LanguagePack.rules`) writes lexicon phrases. A language with a
    rule set of its own needs one here; a close language borrows one (Cantonese: `rules_from="zh"`)."""

    plain: re.Pattern[str]  # what a plain phrase may be written with
    words: Callable[[str], Phrase]  # a plain phrase → its pattern
    regex: Callable[[str], str]  # the `~` gaps inside a `re:` phrase
    whole: Callable[[str], re.Pattern[str]]  # a finding's alternation, matched as this language's words are
    # How AsrTolerance finds near-misses: by sound (toneless pinyin) or by spelling (one edit)
    tolerance: Literal["sound", "spelling"]


_GRAMMARS = {
    "zh": _Grammar(_PLAIN_ZH, _zh_words, _zh_regex, _zh_whole, "sound"),
    "en": _Grammar(_PLAIN_EN, _en_words, _en_regex, _en_whole, "spelling"),
}


def _grammar(lang: str) -> _Grammar:
    return _GRAMMARS[languages.or_fallback(lang).rules]


def is_plain(p: str, lang: str) -> bool:
    if p.startswith(REGEX_PREFIX):
        return False
    return bool(_grammar(lang).plain.match(p))


def _en_word(w: str) -> str:
    """One English word with its regular inflections."""
    if w in ("#", "#10+"):
        return _EN_NUM_10 if w == "#10+" else _EN_NUM
    low = w.lower().replace("’", "'")
    if "'" in low:
        return re.escape(low).replace("'", "['’]?")
    esc = re.escape(low)
    if len(low) < 4 or not low.isalpha():
        return esc + r"(?:s|es)?" if low.isalpha() and len(low) == 3 else esc
    if low.endswith("e"):
        stem = re.escape(low[:-1])
        return rf"{stem}(?:e|es|ed|ing|e's)"
    if low.endswith("y") and low[-2] not in "aeiou":
        stem = re.escape(low[:-1])
        return rf"{stem}(?:y|ies|ied|ying)"
    tail = re.escape(low[-1])
    return rf"{esc}(?:s|es|ed|d|ing|{tail}ed|{tail}ing|'s)?"


def compile_phrase(p: str, lang: str) -> Phrase:
    """One lexicon entry → its regular expression (without word boundaries; see `compile_many`)."""
    if not isinstance(p, str) or not p.strip():
        raise LexiconError(f"empty phrase {p!r}")
    grammar = _grammar(lang)
    if p.startswith(REGEX_PREFIX):
        return Phrase(p, grammar.regex(p[len(REGEX_PREFIX) :]), False)
    if not is_plain(p, lang):
        raise LexiconError(
            f"{p!r} is not plain words (letters, spaces, '~', '#', '#10+'); "
            "start it with 're:' if it is a regular expression"
        )
    return grammar.words(p)


def compile_many(patterns: Iterable[str], lang: str, *, where: str = "") -> re.Pattern[str]:
    """All entries of one finding as one pattern, whole words in English. Raises LexiconError naming
    the entry that does not compile."""
    bodies = []
    for p in patterns:
        try:
            ph = compile_phrase(p, lang)
        except LexiconError as e:
            raise LexiconError(f"{where}: {e}") from None
        try:
            re.compile(ph.pattern)
        except re.error as e:
            raise LexiconError(f"{where}: bad phrase {p!r}: {e}") from None
        bodies.append(f"(?:{ph.pattern})")
    return _grammar(lang).whole("|".join(bodies) or r"(?!x)x")


# --- ASR tolerance -------------------------------------------------------------------------------
def _levenshtein1(a: str, b: str) -> bool:
    """True when a and b differ by exactly one edit (insert, delete, substitute, swap neighbours)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    s, t = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(s) and s[i] == t[i]:
        i += 1
    return s[i:] == t[i + 1 :]


_SOUND_RULES = (
    ("ph", "f"), ("ck", "k"), ("sch", "sk"), ("tch", "ch"), ("dg", "j"), ("qu", "kw"), ("q", "k"), ("x", "ks"),
    ("z", "s"), ("wh", "w"),
)
_SOFT_C = re.compile(r"c(?=[eiy])")
_VOWELS = re.compile(r"(?<!^)[aeiouyhw]")  # h and w only colour the vowels around them ("ch", "sh" stay)


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def sound_key(letters: str) -> str:
    """A consonant skeleton of an English word, for names heard as other words: warfarin and "war for in"
    are both WRFRN; a word starting with a vowel keeps one vowel mark ("A")."""
    s = _letters(letters)
    for a, b in _SOUND_RULES:
        s = s.replace(a, b)
    s = s.replace("ch", "X").replace("sh", "X").replace("th", "0")  # before c and h are read on their own
    s = _SOFT_C.sub("s", s).replace("c", "k")
    s = re.sub(r"^[aeiouy]", "A", s)
    s = _VOWELS.sub("", s)
    return re.sub(r"(.)\1+", r"\1", s).upper()


@lru_cache(maxsize=1)
def _pinyin_fn():  # type: ignore[no-untyped-def]
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        return None

    def syllables(text: str) -> list[str]:
        # one item per character: hanzi → toneless pinyin, anything else stays itself
        return lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s))

    return syllables


class AsrTolerance:
    """Rewrites near-misses of lexicon words into the words themselves, before anything is matched."""

    def __init__(
        self, literals: Iterable[str], lang: str, *, never: Iterable[str] = (), names: Iterable[str] = ()
    ) -> None:
        self.lang = lang
        self.never = set(never)
        # sound key → name, for names of six letters or more whose skeleton has four consonants or more (a shorter
        # one is many ordinary words: "happen" sounds like EpiPen)
        self._names = {
            k: n for n in names if len(_letters(n)) >= 6 and len(k := sound_key(n)) >= 4
        }
        self._spelt = {n.lower() for n in self._names.values()}
        self._by_sound = _grammar(lang).tolerance == "sound"
        if self._by_sound:
            fn = _pinyin_fn()
            self._py = fn
            table: dict[tuple[str, ...], str] = {}
            if fn is not None:
                for w in sorted(set(literals), key=len, reverse=True):
                    syl = tuple(fn(w))
                    if len(w) >= 3 and len(syl) == len(w) and all(s.isalpha() and s.isascii() for s in syl):
                        table.setdefault(syl, w)
            self._table = table
            self._lengths = sorted({len(k) for k in table}, reverse=True)
        else:
            vocab = {w.lower() for lit in literals for w in re.findall(r"[A-Za-z]+", lit) if len(w) >= 7}
            self._vocab_by_first: dict[str, list[str]] = {}
            for w in sorted(vocab):
                self._vocab_by_first.setdefault(w[0], []).append(w)
            self._vocab = vocab

    @property
    def active(self) -> bool:
        return bool(self._table) if self._by_sound else bool(self._vocab or self._names)

    def fix(self, text: str) -> str:
        return self._fix_zh(text) if self._by_sound else self._fix_names(self._fix_en(text))

    def _fix_names(self, text: str) -> str:
        """One to four words that sound like a name of `asr_names`, with at least as many letters."""
        if not self._names:
            return text
        words = list(re.finditer(r"[A-Za-z]+(?:-[A-Za-z]+)*", text))
        out: list[str] = []
        last = i = 0
        while i < len(words):
            for n in (4, 3, 2, 1):
                run = words[i : i + n]
                if len(run) < n or any(re.search(r"[^\s-]", text[a.end() : b.start()]) for a, b in pairwise(run)):
                    continue  # only words next to each other, with nothing but spaces or a hyphen between
                letters = "".join(w.group(0) for w in run)
                if n > 1 and any(w.group(0).lower() in self._spelt for w in run):
                    continue  # "my metformin" is the name already, with a word before it
                name = self._names.get(sound_key(letters))
                if name is not None and len(_letters(letters)) >= 6:
                    if _letters(letters) != name.lower():
                        out += [text[last : run[0].start()], name]
                        last = run[-1].end()
                    i += n
                    break
            else:
                i += 1
        return "".join([*out, text[last:]]) if out else text

    def _fix_en(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            w = m.group(0)
            low = w.lower()
            if len(low) < 7 or low in self._vocab or low in self.never:
                return w
            for cand in self._vocab_by_first.get(low[0], ()):
                if _levenshtein1(low, cand) and not cand.startswith(low) and not low.startswith(cand):
                    return cand
            return w

        return re.sub(r"[A-Za-z]+", one, text)

    def _fix_zh(self, text: str) -> str:
        if not self._table or self._py is None or not re.search(r"[\u4e00-\u9fff]", text):
            return text
        syl = self._py(text)
        if len(syl) != len(text):
            return text
        chars = list(text)
        i = 0
        while i < len(chars):
            for n in self._lengths:
                if i + n > len(chars):
                    continue
                word = self._table.get(tuple(syl[i : i + n]))
                if word is not None:
                    seen = "".join(chars[i : i + n])
                    if seen != word and seen not in self.never:
                        chars[i : i + n] = list(word)
                    i += n - 1
                    break
            i += 1
        return "".join(chars)
