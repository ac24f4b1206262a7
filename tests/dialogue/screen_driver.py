"""A text call through the public dialogue factory, driven the way the voice loop drives it, for the
screen / confirmation / read-back tests; optionally with a semantic layer's suspicions injected (a
hand-built `Extraction` with `suspected`, until dialogue.extract produces them itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialogue.extract import Extraction, Mention
from dialogue.factory import build_dialogue_factory
from voice.conversation import CallerUtterance, EndCall, Escalate, ExpectAnswer
from voice.events import CallInfo

NUMBERS = {"zh": "120", "en": "911"}


@dataclass(frozen=True, slots=True)
class SuspectingExtraction(Extraction):
    suspected: tuple[Mention, ...] = ()


class Suspecting:
    """The real extractor, plus suspicions for the utterances named in `table` (text -> [(finding, span)])."""

    def __init__(self, real: Any, table: dict[str, list[tuple[str, str]]]) -> None:
        self.real, self.table = real, table

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def extract(self, text: str) -> Extraction:
        e = self.real.extract(text)
        sus = tuple(Mention(f, True, span) for f, span in self.table.get(text, []))
        return SuspectingExtraction(e.mentions, e.slots, sus)


class Call:
    def __init__(self, lang: str, suspicions: dict[str, list[tuple[str, str]]] | None = None) -> None:
        factory = build_dialogue_factory(chat_model=None, emergency_numbers=NUMBERS, llm_capable=False)
        self.d: Any = factory(CallInfo(call_id="screen-test", language=lang, channel="text"))  # type: ignore[arg-type]
        if suspicions:
            self.d.x = Suspecting(self.d.x, suspicions)
        self.turn = 0
        self.log: list[Any] = []

    async def open(self) -> list[Any]:
        return await self._collect(self.d.opening())

    async def say(self, text: str, uncertain: tuple[str, ...] = ()) -> list[Any]:
        self.turn += 1
        return await self._collect(self.d.respond(CallerUtterance(text, self.turn, uncertain_words=uncertain)))

    async def silence(self, count: int) -> list[Any]:
        return await self._collect(self.d.on_silence(count))

    async def _collect(self, gen: Any) -> list[Any]:
        out = [o async for o in gen]
        self.log += out
        return out

    async def answer_until_done(self, answer: str, limit: int = 30) -> list[str]:
        """Answer every question the same way until the call ends; returns the questions asked."""
        asked = []
        for _ in range(limit):
            if self.d.ended or self.escalated():
                break
            asked.append(self.last_question())
            await self.say(answer)
        return asked

    def last_question(self) -> str:
        for i in range(len(self.log) - 1, 0, -1):
            if isinstance(self.log[i], str) and isinstance(self.log[i - 1], ExpectAnswer):
                return self.log[i]
        return ""

    def escalated(self) -> bool:
        return any(isinstance(o, Escalate) and o.level != "nurse" for o in self.log)

    def ended(self) -> bool:
        return any(isinstance(o, EndCall) for o in self.log)

    @staticmethod
    def actions_of(out: list[Any], kind: type) -> list[Any]:
        return [o for o in out if isinstance(o, kind)]

    @staticmethod
    def text(out: list[Any]) -> str:
        return " ".join(o for o in out if isinstance(o, str))
