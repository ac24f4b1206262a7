"""Triage: `triage_text` for one statement, and `TriageDialogue`, the per-call protocol conversation
(greeting and consent → chief complaint → the protocol's open questions → the emergency screen → disposition,
department and safety-net advice → close), with red flags checked on every caller turn and overriding
everything. A suspected red flag is confirmed at once (dialogue.confirm), critical numbers and red-flag denials
are read back (dialogue.readback), and an escalated caller who goes quiet is held for a nurse, never hung up on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from dialogue.checks import Checks
from dialogue.confirm import suspect_pictures
from dialogue.engine import Assessment, assess, next_question
from dialogue.extract import extractor
from dialogue.facts import Facts
from dialogue.knowledge import knowledge
from dialogue.protocols import URGENCY, Protocol, Question
from dialogue.readback import Snapshot
from dialogue.result import assessed
from dialogue.screen import ScreenAsk
from dialogue.session import DialogueSession
from dialogue.slots import slot_answer
from voice.conversation import (
    CallerUtterance,
    DialogueOutput,
    EndCall,
    Escalate,
    ExpectAnswer,
    Outcome,
)
from voice.events import CallInfo
from voice.languages import languages
from voice.result import (
    CallResult,
    Confirmation,
    LlmDisagreement,
    Progress,
    ReadBack,
    ScreenAnswer,
    Suspicion,
)
from voice.result_json import read_parts

log = logging.getLogger("carecall.dialogue.triage")

__all__ = ["PendingQuestion", "TriageDialogue", "triage_text"]


@dataclass(frozen=True, slots=True)
class PendingQuestion:
    """What the bot's last question asks (for simulated callers and tests): `id` is "consent",
    "complaint", "transfer_offer" or "<protocol>.<question>"; a "yes" confirms any of `findings`."""

    id: str
    kind: str
    findings: tuple[str, ...] = ()
    slot: str | None = None


def triage_text(text: str, lang: str) -> CallResult:
    """Single-shot triage of one statement (whatever it does not say counts as not reported). Pure."""
    lang = languages.or_fallback(lang).code
    kn = knowledge()
    facts = Facts(lang)
    facts.add(extractor(lang).extract(text), 0, text)
    suspect_pictures(facts, kn)
    return assessed(lang, facts, assess(facts, kn), kn)


class TriageDialogue(Checks, DialogueSession):
    mode = "triage"

    def __init__(self, info: CallInfo, **kw: Any) -> None:
        super().__init__(info, **kw)
        self.asked: set[str] = set()
        self.pending: tuple[Protocol, Question] | None = None
        self.retried = False
        self.complaint_tries = 0
        self.assessment: Assessment = assess(self.facts, self.kn)
        self.summary: dict[str, Any] | None = None
        self.init_checks()
        self.unclear_after_flag = 0  # unclear answers to the transfer offer (treated like silence)

    async def opening(self) -> AsyncIterator[DialogueOutput]:
        if self.info.params.get("consent") == "page":  # the widget: agreed to the recording on the page
            self.phase = "complaint"
            for out in self.ask(self.t("greeting_page_consent"), "free"):
                yield out
            return
        self.phase = "consent"
        for out in self.ask(self.t("greeting"), "yes_no"):
            yield out

    def reask_prompt(self) -> tuple[str, str]:
        if self.phase == "consent":  # the caller went straight to the problem: ask for it, not the greeting
            return self.t("ask_complaint"), "free"
        return super().reask_prompt()

    async def _respond(self, utt: CallerUtterance) -> list[DialogueOutput]:
        text = utt.text.strip()
        if not text:
            return []
        if self.answer_reader.intent("transfer", text):
            return self.transfer("caller asked for a person")
        if self.answer_reader.intent("repeat", text) and len(text) < 40:
            return [ExpectAnswer(self.last_kind), self.last_prompt] if self.last_prompt else []  # type: ignore[list-item]
        answer = self.answer_reader.answer(text)
        self.turn = utt.turn_index
        before, saved = Snapshot.of(self.facts), self._saved()
        new = await self.understand(utt)
        reask: list[DialogueOutput] | None = None
        prefix: list[DialogueOutput] = []
        check, self.check = self.check, None
        if check is not None:
            reask = self.take_check(check, answer, utt.text)
        elif self.phase == "questions" and self.pending is not None:
            reask = self._take_answer(utt, answer, new, prefix)
        self.assessment = assess(self.facts, self.kn)
        flags = self.red_flag_outputs(self.assessment)
        if flags:
            self.check = None
            return [*prefix, *flags, Outcome(self.result())]
        if c := self.confirm_now():
            return [*prefix, *self.ask_check(c)]
        screen_number = isinstance(check, ScreenAsk) and check.kind == "number"  # a baby's age is read back too
        if reask is None and (check is None or screen_number) and (
            c := self.read_back_now(before, utt.text, utt.uncertain_words, saved)
        ):
            return [*prefix, *self.ask_check(c)]
        if reask is not None and check is not None:
            return [*prefix, *reask]
        if reask is not None:
            if self.assist is not None and self.pending is not None and not new:
                # an off-script turn: a short guarded reply from the LLM, then the same question again
                p, q = self.pending
                question = self.kn.protocol_text[self.lang][p.id].questions[q.id]
                fallback = self.t("not_understood_number" if q.kind in ("number", "scale") else "not_understood_yes_no")
                reply = await self.assist.offscript(text, question, self.lang, fallback)
                return [reply, *self.ask(question, q.kind)]
            return reask

        if self.phase == "transfer_offer":
            if answer == "yes":
                return self.transfer("accepted after red flag")
            if answer != "no":  # "help...", a moan, words we cannot place: never hang up on that
                self.unclear_after_flag += 1
                if self.unclear_after_flag == 1:
                    return self.ask(self.t("not_understood_yes_no") + " " + self.t("offer_transfer"), "yes_no")
                return self.hold_outputs(self.max_silence_reprompts)
            self.ended = "red_flag"
            return [self.t("no_transfer"), self.t("after_red_flag_end"), Outcome(self.result()), EndCall("red_flag")]

        if self.phase == "consent":
            if answer == "no" and not new and check is None:
                self.ended = "consent_declined"
                return [self.t("consent_declined"), Outcome(self.result()), EndCall("consent_declined")]
            self.phase = "complaint"
            if not self.assessment.complaints:
                return self.ask(self.t("ask_complaint"), "free")

        elif self.phase == "complaint":
            if not self.assessment.complaints and (c := self.before_questions()):
                return [*prefix, *self.ask_check(c)]  # "I've got the runs": confirm what was half-heard
            if not self.assessment.complaints:
                self.complaint_tries += 1
                if self.answer_reader.intent("stop", text) or self.complaint_tries >= 3:
                    return self.conclude()
                if self.assist is not None and not new:
                    prefix.append(
                        await self.assist.offscript(text, self.t("ask_complaint"), self.lang, self.t("offtopic"))
                    )
                elif not new and self.complaint_tries == 2:
                    prefix.append(self.t("offtopic"))
                return [*prefix, *self.ask(self.t("ask_complaint_again"), "free")]

        return [*prefix, *await self.next_step(self.answer_reader.intent("correction", text))]

    def _take_answer(
        self, utt: CallerUtterance, answer: str | None, new: list[str], prefix: list[DialogueOutput]
    ) -> list[DialogueOutput] | None:
        """Store the answer to the pending question; returns outputs only to re-ask it once."""
        assert self.pending is not None
        p, q = self.pending
        key = f"{p.id}.{q.id}"
        if answer == "unknown":
            self.asked.add(key)
            self.pending = None
            self.retried = False
            prefix.append(self.t("ok_unknown"))
            return None
        if q.kind == "yes_no" and q.finding:
            if self.yes_no_answer(q.finding, utt, answer) is None and not new and not self.retried:
                self.retried = True
                return self.ask(self.t("not_understood_yes_no") + " " + self.last_prompt, "yes_no")
        elif q.slot and self.facts.num(q.slot) is None:
            value = slot_answer(q.slot, utt.text, self.lang)
            if value is not None and q.kind in ("number", "scale"):
                self.facts.set_slot(q.slot, value, utt.turn_index, utt.text, utt.text)
            elif not self.retried and answer is None and not new:
                self.retried = True
                return self.ask(self.t("not_understood_number") + " " + self.last_prompt, q.kind)
        self.asked.add(key)
        self.pending = None
        self.retried = False
        return None

    def _saved(self) -> tuple[Any, ...]:
        return (set(self.asked), self.pending, self.phase, self.last_prompt, self.last_kind, self.retried)

    def undo_turn(self, saved: tuple[Any, ...]) -> None:
        """A turn the caller says was heard wrongly: its facts are restored by the read-back; its question
        state here, so the same question is asked again."""
        self.asked, self.pending, self.phase, self.last_prompt, self.last_kind, self.retried = saved
        self.asked = set(self.asked)

    async def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        if not self.ended and self.silent_check():
            # no answer to a suspected red flag's confirmation: when unsure, escalate
            self.assessment = assess(self.facts, self.kn)
            flags = self.red_flag_outputs(self.assessment)
            if flags:
                for out in [*flags, Outcome(self.result())]:
                    yield out
                return
            for out in await self.next_step():
                yield out
            return
        async for out in super().on_silence(count):
            yield out

    async def next_step(self, corrected: bool = False) -> list[DialogueOutput]:
        self.assessment = assess(self.facts, self.kn)
        prefix: list[DialogueOutput] = [self.t("correction_ack")] if corrected else []
        if c := self.before_questions():
            return [*prefix, *self.ask_check(c)]
        nxt = next_question(self.facts, self.kn, self.assessment, self.asked)
        if nxt is None:
            return [*prefix, *self.conclude()]
        self.phase = "questions"
        self.pending = nxt
        p, q = nxt
        template = self.kn.protocol_text[self.lang][p.id].questions[q.id]
        text = await self.assist.rephrase(template, self.lang) if self.assist is not None else template
        return [*prefix, Outcome(self.state()), *self.ask(text, q.kind)]

    def advice(self) -> str:
        a = self.assessment
        ph = self.kn.phrases[self.lang]
        parts = [ph.dispositions[a.disposition].format(emergency=self.emergency)]
        parts.append(self.t("department", department=ph.departments[a.department]))
        if a.chief_complaint:
            net = self.kn.protocol_text[self.lang][a.chief_complaint].safety_net
            if net:
                parts.append(net.format(emergency=self.emergency))
        return " ".join(parts)

    def conclude(self) -> list[DialogueOutput]:
        """The disposition, unless a suspicion or the emergency screen must be asked first."""
        self.assessment = assess(self.facts, self.kn)
        if c := self.before_disposition():
            self.phase = "questions"
            return self.ask_check(c)
        self.phase = "done"
        self.ended = "completed"
        out: list[DialogueOutput] = [self.t("result_intro") + " " + self.advice(), self.t("close")]
        if URGENCY[self.assessment.disposition] >= URGENCY["emergency"] and not self.escalated:
            level = self.assessment.disposition
            self.actions.append(f"escalated:{level}")
            out.insert(1, Escalate(reason="protocol disposition", level=level))  # type: ignore[arg-type]
        return [*out, Outcome(self.result()), EndCall("completed")]

    def pending_question(self) -> PendingQuestion | None:
        """The question now awaiting the caller's answer, from the dialogue's own state; None when done."""
        if self.ended or self.transferred:
            return None
        if self.phase == "questions" and self.pending is not None:
            p, q = self.pending
            return PendingQuestion(f"{p.id}.{q.id}", q.kind, (q.finding,) if q.finding else (), q.slot)
        if self.phase in ("consent", "complaint", "transfer_offer"):
            return PendingQuestion(self.phase, self.last_kind)
        return None

    def result(self) -> CallResult:
        a = self.assessment = assess(self.facts, self.kn)
        base = assessed(self.lang, self.facts, a, self.kn)
        ph = self.kn.phrases[self.lang]
        situation = ph.texts["sbar_situation"].format(
            complaint=base.chief_complaint_name or ph.texts["sbar_none"],
            disposition=ph.dispositions[a.disposition].format(emergency=self.emergency).rstrip(".。"),
            department=ph.departments[a.department],
        )
        checks = self.check_results()
        return replace(
            base,
            call_id=self.info.call_id,
            end_reason=self.ended,
            summary=self.handover(situation=situation, red_flags=list(base.red_flags), alarms=[], advice=self.advice()),
            actions=self.action_labels(),
            escalated=bool(self.escalated),
            escalation_level=self.escalation_level,
            transferred=self.transferred,
            held_for_nurse=self.holding,
            questions_asked=tuple(sorted(self.asked)),
            questions_total=self.questions_put,
            llm_disagreements=read_parts(LlmDisagreement, self.assist.disagreements if self.assist else []),
            screen=read_parts(ScreenAnswer, checks["screen"]),
            screen_questions=int(checks["screen_questions"]),
            suspected=read_parts(Suspicion, checks["suspected"]),
            confirmations=read_parts(Confirmation, checks["confirmations"]),
            readbacks=read_parts(ReadBack, checks["readbacks"]),
        )

    def state(self) -> Progress:
        a = self.assessment
        return Progress(
            "triage", a.disposition, a.department, a.chief_complaint, tuple(f.id for f in a.red_flags),
            chief_complaint_name=self.kn.protocol_text[self.lang][a.chief_complaint].name if a.chief_complaint else "",
        )  # fmt: skip
