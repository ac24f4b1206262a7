"""Post-discharge follow-up (AI 回访): identity check → consent and recording notice → the questionnaire of
prompts/followup/questionnaire.yaml (department variants as data) with the red-flag screen on every
answer → close. Answers become structured outcomes; alarming ones flag the call for a nurse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dialogue.engine import assess
from dialogue.protocols import FollowupQuestion
from dialogue.session import DialogueSession
from dialogue.slots import bare_number, slot_answer
from voice.conversation import CallerUtterance, DialogueOutput, EndCall, Escalate, Outcome
from voice.events import CallInfo
from voice.languages import languages
from voice.result import Answer, AnswerValue, CallResult


class FollowUpDialogue(DialogueSession):
    mode = "followup"

    def __init__(self, info: CallInfo, **kw: Any) -> None:
        super().__init__(info, **kw)
        p = info.params or {}
        self.name = str(p.get("patient_name") or p.get("name") or "")
        self.department = str(p.get("department") or "")
        self.hospital = str(p.get("hospital") or languages.or_fallback(self.lang).default_hospital)
        self.questions = [
            q for q in self.kn.questionnaire.questions if not q.departments or self.department in q.departments
        ]
        self.index = 0
        self.identity_confirmed = False
        self.identity_tries = 0
        self.consent: bool | None = None
        self.retried = False
        self.answers: dict[str, Answer] = {}  # by question id, in the order asked
        self.alarms: list[str] = []
        if p.get("anticoagulant"):
            self.facts.set_finding("anticoagulant", True, -1, "", "discharge record", source="record")
        self.facts.set_finding("recent_surgery", True, -1, "", "discharge record", source="record")

    def ft(self, key: str, **kw: Any) -> str:
        return (
            self.kn.followup_text[self.lang]
            .texts[key]
            .format(emergency=self.emergency, name=self.name, hospital=self.hospital, **kw)
        )

    async def opening(self) -> AsyncIterator[DialogueOutput]:
        self.phase = "identity"
        greeting = self.ft("greeting" if self.name else "greeting_no_name")
        for out in self.ask(greeting, "yes_no"):
            yield out

    async def _respond(self, utt: CallerUtterance) -> list[DialogueOutput]:
        text = utt.text.strip()
        if not text:
            return []
        if self.answer_reader.intent("repeat", text) and len(text) < 40:
            return self.ask(self.last_prompt, self.last_kind) if self.last_prompt else []
        answer = self.answer_reader.answer(text)

        if self.phase == "identity":  # no health talk before we know who is on the line
            if answer == "yes" and not self.answer_reader.intent("identity_denied", text):
                self.identity_confirmed = True
                self.phase = "consent"
                return self.ask(self.ft("consent"), "yes_no")
            self.identity_tries += 1
            if self.identity_tries >= 2 or self.answer_reader.intent("identity_denied", text):
                return self._end("identity_not_confirmed", self.ft("identity_failed"))
            return self.ask(self.ft("identity_retry") if self.name else self.ft("greeting_no_name"), "yes_no")

        if self.answer_reader.intent("transfer", text):
            return self.transfer("caller asked for a person")
        if self.phase == "consent":
            if answer == "no":
                self.consent = False
                return self._end("consent_declined", self.ft("consent_declined"))
            self.consent = True
            self.phase = "questions"
            return self._next([])

        new = await self.understand(utt)
        prefix: list[DialogueOutput] = []
        reask: list[DialogueOutput] | None = None
        if self.phase == "transfer_offer":
            if answer == "yes":
                return self.transfer("accepted after red flag")
            self.phase = "questions"
            prefix.append(self.t("no_transfer"))
        elif self.phase == "questions" and self.index < len(self.questions):
            q = self.questions[self.index]
            reask = self._record(q, utt, answer, new)
            if reask is None:
                prefix += self._alarm(q)
                if q.then_say:
                    prefix.append(self.ft(q.then_say))
                self.index += 1
        flags = self.red_flag_outputs(assess(self.facts, self.kn, mode="followup"))
        if flags:
            return [*prefix, *flags, Outcome(self.result())]
        if reask is not None:
            return reask
        return self._next(prefix)

    def _record(
        self, q: FollowupQuestion, utt: CallerUtterance, answer: str | None, new: list[str]
    ) -> list[DialogueOutput] | None:
        value: AnswerValue = None
        if q.kind == "yes_no":
            value = self.yes_no_answer(q.finding, utt, answer)
            if value is None and answer is None and not self.retried:
                self.retried = True
                return self.ask(self.ft("not_understood_yes_no") + " " + self.last_prompt, "yes_no")
        elif q.kind in ("number", "scale"):
            number = slot_answer(q.slot, utt.text, self.lang) if q.slot else bare_number(utt.text, self.lang)
            if number is None and q.slot:
                number = self.facts.num(q.slot)  # the caller's own words gave it ("pain about 6")
            if number is None and answer != "unknown" and not self.retried:
                self.retried = True
                return self.ask(self.ft("not_understood_number") + " " + self.last_prompt, q.kind)
            if q.slot and number is not None:
                self.facts.set_slot(q.slot, float(number), utt.turn_index, utt.text, utt.text)
            value = number
        else:
            value = None if answer == "no" else utt.text
        self.retried = False
        alarm = (
            (q.alarm_if == "yes" and value is True)
            or (q.alarm_if == "no" and value is False)
            or (q.alarm_min is not None and isinstance(value, float) and value >= q.alarm_min)
            or (q.alarm_max is not None and isinstance(value, float) and value <= q.alarm_max)
            or (q.alarm_on_new_findings and any(f not in q.new_findings_ignored for f in new))
        )
        self.answers[q.id] = Answer(
            question=q.id,
            section=q.section,
            answer=answer or ("free" if q.kind == "free" else None),
            value=value,
            turn=utt.turn_index,
            text=utt.text,
            alarm=bool(alarm),
        )
        if alarm:
            self.alarms.append(q.id)
        return None

    def _alarm(self, q: FollowupQuestion) -> list[DialogueOutput]:
        given = self.answers.get(q.id)
        if given is None or not given.alarm:
            return []
        if "nurse_callback" not in self.actions:
            self.actions.append("nurse_callback")
        return [self.ft("noted_nurse"), Escalate(reason=f"follow-up answer: {q.id}", level="nurse")]

    def _next(self, prefix: list[DialogueOutput]) -> list[DialogueOutput]:
        while self.index < len(self.questions):
            q = self.questions[self.index]
            gate = self.answers.get(q.skip_if_no) if q.skip_if_no else None
            if gate is not None and gate.value is False:
                self.index += 1
                continue
            text = self.kn.followup_text[self.lang].questions[q.id]
            return [*prefix, *self.ask(text, q.kind)]
        return [*prefix, *self._end("completed", self.ft("close_nurse" if self.alarms or self.escalated else "close"))]

    def _end(self, reason: str, text: str) -> list[DialogueOutput]:
        self.ended = reason
        self.phase = "done"
        return [text, Outcome(self.result()), EndCall(reason)]

    def result(self) -> CallResult:
        a = assess(self.facts, self.kn, mode="followup")
        ph = self.kn.phrases[self.lang]
        dept = ph.departments.get(self.department, self.department or ph.texts["sbar_none"])
        situation = ph.texts["sbar_situation_followup"].format(name=self.name or ph.texts["sbar_none"], department=dept)
        alarm_labels = [self.kn.followup_text[self.lang].questions[q] for q in self.alarms]
        advice = ph.texts["action_nurse_callback"] if self.alarms or a.red_flags else ""
        red_flags = tuple(f.id for f in a.red_flags)
        return CallResult(
            mode="followup",
            call_id=self.info.call_id,
            language=self.lang,
            end_reason=self.ended,
            department=self.department,
            department_name=ph.departments.get(self.department, self.department),
            findings=self.facts.evidence(),
            numbers={k: v.value for k, v in self.facts.slots.items()},
            red_flags=red_flags,
            summary=self.handover(situation=situation, red_flags=list(red_flags), alarms=alarm_labels, advice=advice),
            actions=self.action_labels(),
            escalated=bool(self.escalated or self.alarms),
            escalation_level=self.escalation_level or ("nurse" if self.alarms else None),
            transferred=self.transferred,
            held_for_nurse=self.holding,
            identity_confirmed=self.identity_confirmed,
            consent=self.consent,
            answers=tuple(self.answers.values()),
            alarms=tuple(self.alarms),
            complete=self.ended == "completed",
        )
