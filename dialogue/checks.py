"""The questions a triage call asks beside its protocol, and how their answers are taken: confirmations of
suspected findings (dialogue.confirm), read-backs (dialogue.readback) and the emergency screen
(dialogue.screen). `TriageDialogue` mixes this in; one such question (a "check") is pending at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dialogue.confirm import ConfirmAsk, Confirmer
from dialogue.readback import ReadBack, ReadBackAsk, Snapshot
from dialogue.screen import Screen, ScreenAsk, screen_data
from voice.conversation import DialogueOutput, Outcome
from voice.result import Progress

if TYPE_CHECKING:
    from dialogue.answers import AnswerReader
    from dialogue.engine import Assessment
    from dialogue.extract import Mention
    from dialogue.facts import Facts
    from dialogue.knowledge import Knowledge

Check = ScreenAsk | ConfirmAsk | ReadBackAsk


class Checks:
    """State and steps for the checks; expects the dialogue's facts, assessment, `ask` and `t`."""

    lang: str
    kn: Knowledge
    facts: Facts
    assessment: Assessment
    escalated: list[str]
    turn_found: dict[str, Mention]
    last_prompt: str
    last_kind: str
    answer_reader: AnswerReader  # reads yes / no / unsure

    if TYPE_CHECKING:  # provided by the dialogue this is mixed into

        def ask(self, text: str, kind: str) -> list[DialogueOutput]: ...
        def t(self, key: str, **kw: Any) -> str: ...
        def state(self) -> Progress: ...
        def undo_turn(self, saved: tuple[Any, ...]) -> None: ...

    def init_checks(self) -> None:
        self.screen = Screen(self.lang, screen_data())
        self.confirmer = Confirmer(self.lang, self.kn)
        self.readback = ReadBack(self.lang, self.kn)
        self.check: Check | None = None
        self.turn = 0
        self._before_check: tuple[Any, ...] | None = None  # what a wrongly heard turn is undone to

    def ask_check(self, c: Check) -> list[DialogueOutput]:
        self.check = c
        if isinstance(c, ScreenAsk):
            kind = c.answer_kind
        elif isinstance(c, ReadBackAsk):
            kind = "number" if c.kind == "renumber" else "yes_no"
        else:
            kind = "yes_no"
        return [Outcome(self.state()), *self.ask(c.text, kind)]

    def confirm_now(self) -> ConfirmAsk | None:
        """A suspected red flag is confirmed at once, before anything else (even a question being re-asked:
        a screen question set aside for it is asked again later). Nothing once the call is escalated."""
        if self.escalated or isinstance(self.check, ConfirmAsk):
            return None  # (a confirmation being asked again in other words stands)
        c = self.confirmer.next_red_flag(self.facts, self.turn)
        if c is not None and isinstance(self.check, ScreenAsk):
            self.screen.queue.insert(0, (self.check.kind, self.check.items))
            self.screen.retried = False
        return c

    def read_back_now(
        self, before: Snapshot, text: str, uncertain: tuple[str, ...], saved: tuple[Any, ...]
    ) -> ReadBackAsk | None:
        """A read-back of what this turn changed, before the triage acts on it; never once escalated."""
        if self.escalated:
            return None
        c = self.readback.detect(before, self.facts, self.turn_found, text, uncertain, self.turn,
                                  self.answer_reader.answer)
        if c is not None:
            self._before_check = saved
        return c

    def before_questions(self) -> Check | None:
        """Before the next protocol question: other suspicions, and the screen's own follow-ups."""
        if self.escalated:
            return None
        return self.confirmer.next_other(self.facts, self.turn) or self.screen.next(
            self.facts, self._complaints(), self.assessment.disposition, self.turn, queued_only=True
        )

    def before_disposition(self) -> Check | None:
        """Before a disposition below `emergency`: open suspicions, then the emergency screen."""
        if self.escalated or self.assessment.urgent:
            return None
        return self.confirmer.next_other(self.facts, self.turn) or self.screen.next(
            self.facts, self._complaints(), self.assessment.disposition, self.turn
        )

    def _complaints(self) -> list[str]:
        return [pid for pid, _ in self.assessment.complaints]

    def take_check(self, c: Check, answer: str | None, text: str) -> list[DialogueOutput] | None:
        """Apply the answer to the pending check; outputs only to ask again (or to re-ask what was undone)."""
        found = self.turn_found
        if isinstance(c, ScreenAsk):
            if not self.screen.take(c, answer, found, text, self.turn, self.facts):
                self.check = c
                return self.ask(self.screen.data.text[self.lang].texts["not_understood"] + " " + c.text, c.answer_kind)
            return None
        if isinstance(c, ConfirmAsk):
            said = found[c.finding].present if c.finding in found else None
            if not self.confirmer.take(c, answer, said, text, self.turn, self.facts):
                self.check = c
                return self.ask(self.confirmer.question(c.finding, self.facts, retry=True), "yes_no")
            return None
        outcome = self.readback.take(c, answer, found, text, self.turn, self.facts)
        if outcome == "ask_number":
            again = self.readback.ask_again(c, self.turn)
            self.check = again
            return self.ask(again.text, "number")
        if outcome == "reask" and self._before_check is not None:
            self.undo_turn(self._before_check)
            self._before_check = None
            prompt, kind = self.reask_prompt()
            return [self.t("readback_again"), *self.ask(prompt, kind)] if prompt else []
        return None

    def reask_prompt(self) -> tuple[str, str]:
        """What to ask again after the caller said a read-back was wrong: the question that turn
        answered (the dialogue may narrow it, e.g. not the whole greeting again)."""
        return self.last_prompt, self.last_kind

    def silent_check(self) -> bool:
        """The caller said nothing to a pending check: a red-flag check counts as present (when unsure,
        escalate). True when it was applied."""
        c = self.check
        if c is None or self.escalated:
            return False
        if isinstance(c, ConfirmAsk) and c.red_flag:
            self.confirmer.no_answer(c, self.turn, self.facts)
        elif isinstance(c, ScreenAsk) and c.kind == "follow":
            self.screen.retried = True
            self.screen.take(c, "unknown", {}, "", self.turn, self.facts)
        elif isinstance(c, ReadBackAsk) and c.kind == "negation":
            self.readback.take(c, "unknown", {}, "", self.turn, self.facts)
        else:
            return False
        self.check = None
        return True

    def check_results(self) -> dict[str, Any]:
        return {
            "screen": list(self.screen.records),
            "screen_questions": self.screen.questions(),
            "suspected": self.confirmer.suspected(self.facts),
            "confirmations": list(self.confirmer.records),
            "readbacks": list(self.readback.records),
        }
