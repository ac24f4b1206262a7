"""Rule-based understanding of one caller utterance, per language, driven by prompts/<lang>/lexicon.yaml:
findings with negation ("no fever", "没有咳嗽"), their time and intent (dialogue.temporal), the exemplar match
on every clause (dialogue.semantic) and numeric slots (dialogue.slots). How the caller answered a question is
dialogue.answers' job."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from dialogue.knowledge import knowledge
from dialogue.lexicon import AsrTolerance, alternation, compile_many, compile_phrase
from dialogue.protocols import Cond, Lexicon, ProtocolError
from dialogue.slots import SlotValue, extract_slots
from dialogue.temporal import Reading, decide
from dialogue.temporal import reader as temporal_reader
from voice.languages import languages

if TYPE_CHECKING:
    from dialogue.semantic import Bank, Index

_EN_SENTENCE = re.compile(r"[.;!?\n]|,\s+(?=(?:and\s+|but\s+)?(?:i|he|she|they|we|it|my|his|her|their)\b)")
_ZH_CLAUSE = re.compile(r"[，。；！？,.;!?\n]")
_NEVER_LIKE = re.compile(r"\bnever\b|从来没|从没|没有?这么|没有?那么", re.IGNORECASE)
_LIKE_THIS = re.compile(
    r"like (?:this|that)|this (?:bad|severe|much)|so (?:bad|severe)|before|in my life|这么|那么|过", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class _TextRules:
    """How this module reads one rule set's text (keyed by `voice.languages.LanguagePack.rules`)."""

    spaced: bool  # words have spaces: patterns get word boundaries and ignore case
    clause_before: re.Pattern[str]  # where the clause a finding sits in starts
    clause_after: re.Pattern[str]  # ...and ends
    window_chars: int | None  # at most this far back a negation cue is looked for in the clause
    near_chars: int  # between a body part and the pain word
    deny_reach: int  # how far back a cue may deny a normal function
    telling: int  # words (characters where words have no spaces) a negated clause needs to tell an absence


_RULES = {
    "zh": _TextRules(False, _ZH_CLAUSE, _ZH_CLAUSE, 12, 8, 12, 8),
    "en": _TextRules(True, _EN_SENTENCE, re.compile(r"[.;!?\n]"), None, 30, 48, 5),
}


@dataclass(frozen=True, slots=True)
class Mention:
    finding: str
    present: bool
    span: str
    definite: bool = False  # an explicit statement of absence ("afebrile"): wins in its utterance
    via: str = ""  # "" for the lexicon; "semantic" for the exemplar match (dialogue.semantic); "llm"
    score: float = 1.0  # how sure: 1.0 for the lexicon, the calibrated similarity for the semantic layer
    tense: str = "present"  # dialogue.temporal: present | past | hypothetical | question | known | experiential


@dataclass(frozen=True, slots=True)
class Extraction:
    mentions: tuple[Mention, ...]
    slots: tuple[SlotValue, ...]
    # findings the caller may have meant, to be confirmed by the bot before acting on them (a red flag whose
    # time is unclear, a semantic match between the two thresholds, an LLM reading); never dropped
    suspected: tuple[Mention, ...] = ()

    def findings(self) -> dict[str, Mention]:
        """One verdict per finding: any positive mention wins over negated ones in the same utterance.
        Positive mentions that are not about now (history, a hypothetical) are not findings."""
        out: dict[str, Mention] = {}
        for m in self.mentions:
            if m.present and m.tense != "present":
                continue
            old = out.get(m.finding)
            if old is None or m.definite or (m.present and not old.present and not old.definite):
                out[m.finding] = m
        return out


class Extractor:
    def __init__(self, lex: Lexicon, lang: str, *, semantic: bool = True) -> None:
        self.lang = lang
        self.semantic = semantic  # the exemplar match on every clause, when its model is installed
        self.lex = lex
        self.rules = rules = _RULES[languages.or_fallback(lang).rules]
        zh = not rules.spaced
        flags = 0 if zh else re.IGNORECASE

        def finding_re(patterns: list[str], where: str = "") -> re.Pattern[str]:
            return compile_many(patterns, lang, where=f"prompts/{lang}/lexicon.yaml: {where}")

        self._findings = {fid: finding_re(p, f"findings.{fid}") for fid, p in lex.findings.items()}
        self._excluded = {fid: finding_re(p, f"exclusions.{fid}") for fid, p in lex.exclusions.items()}
        unknown = set(lex.exclusions) - set(lex.findings) - set(lex.pain_sites) - set(lex.denied_means)
        if unknown:
            raise ProtocolError(
                f"prompts/{lang}/lexicon.yaml: exclusions: no such finding(s) {', '.join(sorted(unknown))}"
            )
        self._absent = {fid: finding_re(p, f"absent.{fid}") for fid, p in lex.absent.items()}
        self._denied_rx = {fid: finding_re(p, f"denied_means.{fid}") for fid, p in lex.denied_means.items()}
        if zh:
            literals = [
                ph.source for pats in lex.findings.values() for p in pats if (ph := compile_phrase(p, lang)).literal
            ]
            self._tolerance = AsrTolerance(literals, lang, never=lex.asr_words)
        else:
            self._tolerance = AsrTolerance(lex.asr_words, lang, names=lex.asr_names)
        self._time = temporal_reader(lang)
        self._neg_cache: tuple[Bank, np.ndarray] | None = None
        self._alarm = alarm_findings()
        self._red_flag_ids = knowledge().red_flag_findings()
        self._asr = [(re.compile(k, flags), v) for k, v in lex.asr_confusions.items()]
        self._regional_words = {k.lower(): v for k, v in lex.regional.items()}
        self._regional = (
            re.compile(alternation(map(re.escape, sorted(lex.regional, key=len, reverse=True))), flags)
            if lex.regional
            else None
        )
        self._sites = {fid: finding_re(p, f"pain_sites.{fid}") for fid, p in lex.pain_sites.items()}
        neg = lex.negation
        if zh:
            self._cue = re.compile(alternation(neg.cues))
            self._pseudo = re.compile(alternation(sorted(neg.pseudo, key=len, reverse=True)))
            self._term = re.compile(alternation(neg.terminators))
        else:
            words = [c for c in neg.cues if c != "n't"]
            self._cue = re.compile(rf"(?<![a-z])(?:{alternation(words)})(?![a-z])|n't\b|n’t\b", re.IGNORECASE)
            self._pseudo = re.compile(
                rf"(?<![a-z])(?:{alternation(sorted(neg.pseudo, key=len, reverse=True))})(?![a-z])", re.IGNORECASE
            )
            self._term = re.compile(rf"(?<![a-z])(?:{alternation(neg.terminators)})(?![a-z])", re.IGNORECASE)
        self._resolved = re.compile(alternation(neg.resolved), flags)
        self._resolvable = set(neg.resolvable)

    # --- findings ---------------------------------------------------------------------------
    def normalise(self, text: str) -> str:
        """Regional words in their standard form (冇得尿 → 没有尿), known speech-recognition confusions (光盘 →
        黄痰, "my chess hurts" → chest), then near-misses of lexicon words (toneless pinyin for Mandarin, one edit
        for long English words, names by their sound)."""
        if self._regional is not None:
            words = self._regional_words
            text = self._regional.sub(lambda m: words[m.group(0).lower()], text)
        for rx, meant in self._asr:
            text = rx.sub(meant, text)
        return self._tolerance.fix(text)

    def extract(self, text: str) -> Extraction:
        text = self.normalise(text)
        mentions: list[Mention] = []
        suspected: list[Mention] = []
        for fid, rx in self._findings.items():
            masked = self._masks(fid, text)
            for m in rx.finditer(text):
                if any(a < m.end() and m.start() < b for a, b in masked):
                    continue
                present = self._present(text, m.start(), m.end(), fid)
                mentions.append(self._timed(Mention(fid, present, m.group(0)), text, m.start(), m.end(), suspected))
        mentions += [
            Mention(fid, False, m.group(0), definite=True)
            for fid, rx in self._absent.items()
            for m in rx.finditer(text)
        ]
        for lm in self._located_pain(text, mentions):
            at = max(text.find(lm.span), 0)
            mentions.append(self._timed(lm, text, at, at + len(lm.span), suspected))
        # the absence of a normal function, said in the negative, is the finding itself
        for fid, rx in self._denied_rx.items():
            for m in rx.finditer(text):
                if self._denied(text, m.start(), m.end(), fid):
                    mentions.append(self._timed(Mention(fid, True, m.group(0)), text, m.start(), m.end(), suspected))
        if self.semantic:
            mentions += self._semantic(text, mentions, suspected)
        return Extraction(tuple(mentions), tuple(extract_slots(text, self.lang)), tuple(_dedupe(suspected, mentions)))

    def _masks(self, fid: str, text: str) -> list[tuple[int, int]]:
        rx = self._excluded.get(fid)
        return [(m.start(), m.end()) for m in rx.finditer(text)] if rx is not None else []

    def reading(self, text: str, start: int, end: int, fid: str = "") -> Reading:
        return self._time.read(text, start, end, fid)

    def _timed(self, m: Mention, text: str, start: int, end: int, suspected: list[Mention]) -> Mention:
        """Tag a positive mention with its time and intent; an alarm finding whose time is unclear is
        also put on the suspected list (confirmed by the bot, never dropped)."""
        if not m.present or m.finding in self._time.timeless:
            return m
        r = self._time.read(text, start, end, m.finding)
        if r.tense == "present":
            return m
        verdict = decide(r, m.finding in self._alarm)
        if verdict == "finding":
            return m
        tagged = replace(m, tense=r.tense)
        if verdict == "suspected":
            suspected.append(replace(tagged, score=0.5))
        return tagged

    def negated(self, clause: str) -> bool:
        """A negation cue governs this clause, or it says the finding has gone ("已经不出血了"); pseudo-negations
        such as "can't breathe" do not count."""
        return bool(self._cue.search(self._pseudo.sub(" ", clause)) or self._resolved.search(clause))

    def _semantic(self, text: str, mentions: list[Mention], suspected: list[Mention]) -> list[Mention]:
        """Every clause against the exemplar bank: >= high a finding, between the thresholds suspected."""
        from dialogue import semantic

        idx = semantic.index(self.lang)
        if idx is None:
            return []
        parts, whole = semantic.clause_parts(text, self.lang)  # the whole, read at once, mixes polarities
        # too long to be read whole: read two neighbouring clauses at a time too (a denial stays out of them)
        kept = [None if self._denies(c) else c for c in parts]
        pairs = {} if whole is not None else semantic.neighbours(kept, self.lang)
        cands = [c for c in (*parts, *pairs, *([whole] if whole else [])) if not semantic.reassuring(c, self.lang)]
        todo = [c for c in cands if not self._denies(c)]
        # a negated clause can still say a finding that *is* an absence ("he hasn't passed any urine since
        # yesterday", "the baby hasn't moved"): the encoder does not see polarity, so such a clause is
        # compared only with exemplars that are themselves said in the negative
        denied = [c for c in cands if self._denies(c)]
        known = {m.finding for m in mentions}
        # who the patient is (a baby, pregnant) is the setting, not a reading of the clause's symptom
        read = frozenset(m.finding for m in mentions if m.present) - semantic.NEVER_ADD
        th = idx.bank.thresholds
        out: list[Mention] = []
        items = todo + denied
        masked = [False] * len(todo) + [True] * len(denied)
        only = self._negative_exemplars(idx) if denied else None
        found = zip(semantic.readings(idx, items, read, top=2, only=only, masked=masked), masked, strict=True)
        for (best, explained), negated in found:
            if not best:
                continue
            hit = best[0]
            if hit.score < th.low:
                continue
            # an absence that takes part in a red flag ("haven't felt her kick since yesterday") half-matched
            # in the negative is still a suspicion, confirmed, never dropped; a short denial ("no fever",
            # "不是突然的") tells no absence, nor does the whole utterance or two clauses read at once
            if negated and hit.score < th.negated and not (
                hit.clause != whole
                and hit.clause not in pairs
                and self._tells(hit.clause)
                and self._red_flag_ids.intersection(hit.findings)
            ):
                continue
            # two different readings almost as close: ambiguous, so at most a suspicion
            # ("咽口水都疼" is as near "咽不下口水" as "一咽口水嗓子就疼")
            close = len(best) > 1 and hit.score - best[1].score < semantic.MARGIN
            # what the lexicon read explains the clause about as well: no second reading of the same words
            # ("I have chest pain" is not also "…going down my arm"); a sure likeness is at most suspected
            near = hit.score - explained < semantic.EXPLAIN
            if near and hit.score < th.high:
                continue
            sure = hit.score >= th.high and not close and not near
            start = max(text.find(pairs.get(hit.clause, hit.clause)), 0)
            end = start + len(hit.clause)
            for fid in hit.findings:
                if fid in known or fid in semantic.NEVER_ADD:
                    continue
                known.add(fid)
                m = Mention(fid, True, hit.clause, via="semantic", score=round(hit.score, 3))
                if sure:
                    out.append(self._timed(m, text, start, end, suspected))
                    continue
                r = self._time.read(text, start, end, fid)
                if r.tense in ("question", "hypothetical"):
                    continue  # a likeness in a question about treatment is no evidence ("吃什么药比较好")
                if fid in self._time.timeless or decide(r, True) != "history":
                    suspected.append(replace(m, tense=r.tense))
        return out

    def _negative_exemplars(self, idx: Index) -> np.ndarray:
        """Which exemplars of the bank are said in the negative (by this language's negation cues)."""
        bank = idx.bank
        cached = self._neg_cache
        if cached is None or cached[0] is not bank:
            cached = self._neg_cache = (bank, np.array([self._denies(t) for t in bank.texts], dtype=bool))
        return cached[1]

    def _tells(self, clause: str) -> bool:
        words = re.findall(r"\w+", clause) if self.rules.spaced else re.sub(r"\W", "", clause)
        return len(words) >= self.rules.telling

    def _denies(self, clause: str) -> bool:
        """Negated, and not a comparison ("I've never had a headache like this" says a headache)."""
        return self.negated(clause) and not (_NEVER_LIKE.search(clause) and _LIKE_THIS.search(clause))

    def _present(self, text: str, start: int, end: int, fid: str) -> bool:
        rules = self.rules
        bounds = [m.end() for m in rules.clause_before.finditer(text, 0, start)]
        begin = bounds[-1] if bounds else 0
        if rules.window_chars is not None:
            begin = max(begin, start - rules.window_chars)
        window = text[begin:start]
        nxt = rules.clause_after.search(text, end)
        after = text[end : nxt.start() if nxt else len(text)]
        terms = list(self._term.finditer(window))
        if terms:
            window = window[terms[-1].end() :]
        window = self._pseudo.sub(" ", window)
        if self._cue.search(window):
            # "never had pain like this", "从来没这么疼过": a comparison, not a denial
            return bool(_NEVER_LIKE.search(window) and _LIKE_THIS.search(after))
        return not (fid in self._resolvable and self._resolved.search(after))

    def _located_pain(self, text: str, mentions: list[Mention]) -> list[Mention]:
        """A present pain and a body part in the same clause: that site's pain, unless already said."""
        pains = [m for m in mentions if m.finding == "pain" and m.present]
        if not pains or not self._sites:
            return []
        known = {m.finding for m in mentions}
        out: list[Mention] = []
        near = self.rules.near_chars
        for clause in self.rules.clause_before.split(text):
            at = [
                i
                for p in pains
                for i in _find_all(clause, p.span)
                if self._present(clause, i, i + len(p.span), "pain")  # "胸口不疼": not this clause's pain
            ]
            if not at:
                continue
            for fid, rx in self._sites.items():
                for m in rx.finditer(clause):
                    close = any(m.start() - near <= i <= m.end() + near for i in at)
                    if close and fid not in known and self._present(clause, m.start(), m.end(), fid):
                        out.append(Mention(fid, True, clause.strip()))
                        known.add(fid)
        return out

    def _denied(self, text: str, start: int, end: int, fid: str) -> bool:
        """A negation cue governs this normal function itself: nothing that is a finding stands between them
        ("haven't felt the baby kick" yes; "no pain when I pee" no: the cue negates the pain)."""
        if self._present(text, start, end, fid):
            return False
        lo = max(0, start - self.rules.deny_reach)
        cues = list(self._cue.finditer(text, lo, start))
        if not cues:
            return False
        between = text[cues[-1].end() : start]
        return not any(rx.search(between) for rx in self._findings.values())


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while sub and i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def _dedupe(suspected: list[Mention], mentions: list[Mention]) -> list[Mention]:
    """One suspicion per finding, and none for a finding the same utterance states or denies for now."""
    settled = {m.finding for m in mentions if m.tense == "present"}
    out: dict[str, Mention] = {}
    for m in suspected:
        if m.finding not in settled and (m.finding not in out or m.score > out[m.finding].score):
            out[m.finding] = m
    return list(out.values())


def _holds_alone(c: Cond, fid: str) -> bool:
    """Does the condition hold when `fid` is the only thing known?"""
    if c.num or any(f != fid for f in c.all) or (c.any and fid not in c.any) or fid in c.none:
        return False
    return not c.or_ or any(_holds_alone(x, fid) for x in c.or_)


@lru_cache(maxsize=1)
def alarm_findings() -> frozenset[str]:
    """Findings that raise a red flag on their own (a seizure, an overdose, face droop): the ones whose time
    and intent matter most."""
    kn = knowledge()
    ids = kn.known_findings()
    rules = [c for rf in kn.red_flags if (c := rf.condition("triage")) is not None]
    return frozenset(f for f in ids for c in rules if _holds_alone(c, f))


@lru_cache(maxsize=4)
def extractor(lang: str) -> Extractor:
    lang = languages.or_fallback(lang).code
    return Extractor(knowledge().lexicons[lang], lang)
