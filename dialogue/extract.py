"""Rule-based understanding of one caller utterance, per language, driven by prompts/<lang>/lexicon.yaml:
findings with negation ("no fever", "没有咳嗽"), numeric slots (dialogue.slots), yes/no/unknown answers and
conversational intents (repeat, transfer to a human, correction, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from dialogue.protocols import Lexicon, knowledge
from dialogue.slots import SlotValue, extract_slots

Answer = Literal["yes", "no", "unknown"]
# gaps never swallow a negation: "calf is not sore" must not read as "calf ~ sore"
_EN_NEG_WORD = r"(?:not|no|never|without|isn'?t|wasn'?t|aren'?t|doesn'?t|don'?t|didn'?t|hasn'?t)\b"
_EN_GAP = rf"\W+(?:(?!{_EN_NEG_WORD})[\w'’]+\W+){{0,3}}?"
_ZH_GAP = r"[^，。；！？,.;!?\n不没无未]{0,6}?"
_EN_SENTENCE = re.compile(r"[.;!?\n]|,\s+(?=(?:and\s+|but\s+)?(?:i|he|she|they|we|it|my|his|her|their)\b)")
_ZH_CLAUSE = re.compile(r"[，。；！？,.;!?\n]")
_EN_FILLERS = re.compile(r"^(?:(?:um+|uh+|er+|erm|well|oh|hmm+|so|ah|like)[,.\s]+)+", re.IGNORECASE)
_ZH_FILLERS = re.compile(r"^(?:(?:呃|啊|那个|这个|嗯嗯|嗯|哦|噢|唉|哎)[，,。\s]*)+")
_NEVER_LIKE = re.compile(r"\bnever\b|从来没|从没|没有?这么|没有?那么", re.IGNORECASE)
_LIKE_THIS = re.compile(
    r"like (?:this|that)|this (?:bad|severe|much)|so (?:bad|severe)|before|in my life|这么|那么|过", re.IGNORECASE
)
_ZH_ECHO_YES = re.compile(
    r"^(?:有点|有些|挺|很|特别|非常|比较)?(?:疼|痛|肿|烧|喘|红|痒|晕|麻|吐了|拉了|出了|会的|来了|动了)"
)


@dataclass(frozen=True, slots=True)
class Mention:
    finding: str
    present: bool
    span: str
    definite: bool = False  # an explicit statement of absence ("afebrile"): wins in its utterance
    via: str = ""  # "" for the lexicon; "paraphrase" for the embedding fallback (dialogue.paraphrase)


@dataclass(frozen=True, slots=True)
class Extraction:
    mentions: tuple[Mention, ...]
    slots: tuple[SlotValue, ...]

    def findings(self) -> dict[str, Mention]:
        """One verdict per finding: any positive mention wins over negated ones in the same utterance."""
        out: dict[str, Mention] = {}
        for m in self.mentions:
            old = out.get(m.finding)
            if old is None or m.definite or (m.present and not old.present and not old.definite):
                out[m.finding] = m
        return out


def _alt(patterns: list[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


class Extractor:
    def __init__(self, lex: Lexicon, lang: str, *, paraphrase: bool = True) -> None:
        self.lang = lang
        self.paraphrase = paraphrase  # the embedding fallback, when its model is installed
        self.lex = lex
        zh = lang == "zh"
        flags = 0 if zh else re.IGNORECASE

        def finding_re(patterns: list[str]) -> re.Pattern[str]:
            body = _alt(
                [
                    p.replace(" ~ ", _EN_GAP) if not zh else p.replace(" ~ ", _ZH_GAP).replace("~", _ZH_GAP)
                    for p in patterns
                ]
            )
            return re.compile(body if zh else rf"(?<![a-z0-9])(?:{body})(?![a-z])", flags)

        self._findings = {fid: finding_re(p) for fid, p in lex.findings.items()}
        self._absent = {fid: finding_re(p) for fid, p in lex.absent.items()}
        self._denied_rx = {fid: finding_re(p) for fid, p in lex.denied_means.items()}
        self._asr = [(re.compile(k, flags), v) for k, v in lex.asr_confusions.items()]
        self._sites = {fid: finding_re(p) for fid, p in lex.pain_sites.items()}
        neg = lex.negation
        if zh:
            self._cue = re.compile(_alt(neg.cues))
            self._pseudo = re.compile(_alt(sorted(neg.pseudo, key=len, reverse=True)))
            self._term = re.compile(_alt(neg.terminators))
        else:
            words = [c for c in neg.cues if c != "n't"]
            self._cue = re.compile(rf"(?<![a-z])(?:{_alt(words)})(?![a-z])|n't\b|n’t\b", re.IGNORECASE)
            self._pseudo = re.compile(
                rf"(?<![a-z])(?:{_alt(sorted(neg.pseudo, key=len, reverse=True))})(?![a-z])", re.IGNORECASE
            )
            self._term = re.compile(rf"(?<![a-z])(?:{_alt(neg.terminators)})(?![a-z])", re.IGNORECASE)
        self._resolved = re.compile(_alt(neg.resolved), flags)
        self._resolvable = set(neg.resolvable)
        a = lex.answers

        def anchored(patterns: list[str]) -> re.Pattern[str]:
            return re.compile(rf"^(?:{_alt(patterns)})" + ("" if zh else r"(?![a-z])"), flags)

        def anywhere(patterns: list[str]) -> re.Pattern[str]:
            body = _alt([p.replace(" ~ ", _EN_GAP if not zh else _ZH_GAP) for p in patterns])
            return re.compile(body if zh else rf"(?<![a-z])(?:{body})(?![a-z])", flags)

        self._yes, self._no = anchored(a.yes), anchored(a.no)
        self._unknown = anywhere(a.unknown)
        self._intents = {
            name: anywhere(getattr(a, name))
            for name in ("repeat", "transfer", "correction", "stop", "identity_denied", "no_more")
            if getattr(a, name)
        }

    # --- findings ---------------------------------------------------------------------------
    def normalise(self, text: str) -> str:
        """Undo known speech-recognition confusions (光盘 → 黄痰, "my chess hurts" → chest)."""
        for rx, meant in self._asr:
            text = rx.sub(meant, text)
        return text

    def extract(self, text: str) -> Extraction:
        text = self.normalise(text)
        mentions = [
            Mention(fid, self._present(text, m.start(), m.end(), fid), m.group(0))
            for fid, rx in self._findings.items()
            for m in rx.finditer(text)
        ]
        mentions += [
            Mention(fid, False, m.group(0), definite=True)
            for fid, rx in self._absent.items()
            for m in rx.finditer(text)
        ]
        mentions += self._located_pain(text, mentions)
        # the absence of a normal function, said in the negative, is the finding itself
        mentions += [
            Mention(fid, True, m.group(0))
            for fid, rx in self._denied_rx.items()
            for m in rx.finditer(text)
            if self._denied(text, m.start(), m.end(), fid)
        ]
        if self.paraphrase:
            mentions += self._paraphrased(text, mentions)
        return Extraction(tuple(mentions), tuple(extract_slots(text, self.lang)))

    def unrecognised_clauses(self, text: str, mentions: list[Mention]) -> list[str]:
        """Clauses with no lexicon finding and no negation cue: what the paraphrase fallback may read."""
        from dialogue.paraphrase import clauses

        spans = [m.span for m in mentions if m.span]
        return [
            c for c in clauses(text, self.lang) if not any(s in c or c in s for s in spans) and not self._cue.search(c)
        ]

    def _paraphrased(self, text: str, mentions: list[Mention]) -> list[Mention]:
        from dialogue.paraphrase import THRESHOLD, nearest_findings

        triggers = _protocol_triggers()
        if any(m.present and m.finding in triggers for m in mentions):
            return []  # the lexicon recognised a complaint: the fallback is only for callers it did not
        todo = self.unrecognised_clauses(text, mentions)
        if not todo:
            return []
        known = {m.finding for m in mentions}
        return [
            Mention(m.finding, True, m.clause, via="paraphrase")
            for m in nearest_findings(todo, self.lang)
            if m.cosine >= THRESHOLD[self.lang] and m.finding not in known
        ]

    def _present(self, text: str, start: int, end: int, fid: str) -> bool:
        if self.lang == "zh":
            bounds = [m.end() for m in _ZH_CLAUSE.finditer(text, 0, start)]
            window = text[max(bounds[-1] if bounds else 0, start - 12) : start]
            after_bounds = _ZH_CLAUSE.search(text, end)
            after = text[end : after_bounds.start() if after_bounds else len(text)]
        else:
            bounds = [m.end() for m in _EN_SENTENCE.finditer(text, 0, start)]
            window = text[bounds[-1] if bounds else 0 : start]
            nxt = re.search(r"[.;!?\n]", text[end:])
            after = text[end : end + nxt.start() if nxt else len(text)]
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
        splitter = _ZH_CLAUSE if self.lang == "zh" else _EN_SENTENCE
        out: list[Mention] = []
        near = 8 if self.lang == "zh" else 30  # characters between the body part and the pain word
        for clause in splitter.split(text):
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
        lo = max(0, start - (12 if self.lang == "zh" else 48))
        cues = list(self._cue.finditer(text, lo, start))
        if not cues:
            return False
        between = text[cues[-1].end() : start]
        return not any(rx.search(between) for rx in self._findings.values())

    # --- answers and intents -----------------------------------------------------------------
    def _clean(self, text: str) -> str:
        t = text.strip()
        fillers = _ZH_FILLERS if self.lang == "zh" else _EN_FILLERS
        stripped = fillers.sub("", t).strip()
        return stripped if stripped else t

    def answer(self, text: str) -> Answer | None:
        t = self._clean(text)
        if self._unknown.search(t):
            return "unknown"
        if self._no.search(t):
            return "no"
        if self._yes.search(t):
            return "yes"
        if self.lang == "zh" and _ZH_ECHO_YES.search(t):
            return "yes"
        return None

    def intent(self, name: str, text: str) -> bool:
        rx = self._intents.get(name)
        return bool(rx and rx.search(text.strip()))


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while sub and i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


@lru_cache(maxsize=1)
def _protocol_triggers() -> frozenset[str]:
    return frozenset(t for p in knowledge().protocols.values() for t in p.triggers)


@lru_cache(maxsize=4)
def extractor(lang: str) -> Extractor:
    lang = "zh" if lang == "zh" else "en"
    return Extractor(knowledge().lexicons[lang], lang)
