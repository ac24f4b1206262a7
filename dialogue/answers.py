"""How a caller answered the question just put, per language, from prompts/<lang>/lexicon.yaml `answers`:
yes / no / "I don't know", and conversational intents (repeat, transfer to a human, correction, stop, ...).
What a caller's words say about symptoms is dialogue.extract's job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from dialogue.knowledge import knowledge
from dialogue.lexicon import EN_GAP, ZH_GAP, alternation
from dialogue.protocols import Answers
from voice.languages import languages

YesNo = Literal["yes", "no", "unknown"]
# every other list of a lexicon's `answers` is a conversational intent
INTENTS = tuple(name for name in Answers.model_fields if name not in ("yes", "no", "unknown"))
_EN_FILLERS = re.compile(r"^(?:(?:um+|uh+|er+|erm|well|oh|hmm+|so|ah|like)[,.\s]+)+", re.IGNORECASE)
_ZH_FILLERS = re.compile(r"^(?:(?:呃|啊|那个|这个|嗯嗯|嗯|哦|噢|唉|哎)[，,。\s]*)+")
_ZH_ECHO_YES = re.compile(
    r"^(?:有点|有些|挺|很|特别|非常|比较)?(?:疼|痛|肿|烧|喘|红|痒|晕|麻|吐了|拉了|出了|会的|来了|动了)"
)


@dataclass(frozen=True, slots=True)
class _AnswerRules:
    """How one rule set's answers are read (keyed by `voice.languages.LanguagePack.rules`)."""

    spaced: bool  # words have spaces: patterns get word boundaries and ignore case
    fillers: re.Pattern[str]  # "um, well, yes" is a yes
    gap: str  # what " ~ " in a lexicon phrase may stand for (the lexicon compiler's: never over a negation)
    echo_yes: re.Pattern[str] | None  # "疼" for "yes, it hurts": an echo of the question's word


_RULES = {
    "zh": _AnswerRules(False, _ZH_FILLERS, ZH_GAP, _ZH_ECHO_YES),
    "en": _AnswerRules(True, _EN_FILLERS, EN_GAP, None),
}


class AnswerReader:
    def __init__(self, answers: Answers, lang: str) -> None:
        self.rules = rules = _RULES[languages.or_fallback(lang).rules]
        flags = re.IGNORECASE if rules.spaced else 0

        def anchored(patterns: list[str]) -> re.Pattern[str]:
            return re.compile(rf"^(?:{alternation(patterns)})" + (r"(?![a-z])" if rules.spaced else ""), flags)

        def anywhere(patterns: list[str]) -> re.Pattern[str]:
            body = alternation([p.replace(" ~ ", rules.gap) for p in patterns])
            return re.compile(rf"(?<![a-z])(?:{body})(?![a-z])" if rules.spaced else body, flags)

        self._yes, self._no = anchored(answers.yes), anchored(answers.no)
        self._unknown = anywhere(answers.unknown)
        self._intents = {name: anywhere(getattr(answers, name)) for name in INTENTS if getattr(answers, name)}

    def _clean(self, text: str) -> str:
        t = text.strip()
        stripped = self.rules.fillers.sub("", t).strip()
        return stripped if stripped else t

    def answer(self, text: str) -> YesNo | None:
        t = self._clean(text)
        if self._unknown.search(t):
            return "unknown"
        if self._no.search(t):
            return "no"
        if self._yes.search(t):
            return "yes"
        if self.rules.echo_yes is not None and self.rules.echo_yes.search(t):
            return "yes"
        return None

    def intent(self, name: str, text: str) -> bool:
        rx = self._intents.get(name)
        return bool(rx and rx.search(text.strip()))


@lru_cache(maxsize=4)
def answer_reader(lang: str) -> AnswerReader:
    lang = languages.or_fallback(lang).code
    return AnswerReader(knowledge().lexicons[lang].answers, lang)
