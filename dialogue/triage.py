"""Triage: `triage_text` for one statement, and `TriageDialogue`, the per-call protocol conversation
(greeting and consent → chief complaint → the protocol's open questions → the emergency screen → disposition,
department and safety-net advice → close), with red flags checked on every caller turn and overriding
everything. A suspected red flag is confirmed at once (dialogue.confirm), critical numbers and red-flag denials
are read back (dialogue.readback), and an escalated caller who goes quiet is held for a nurse, never hung up on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from dialogue.assist import LLMAssist, llm_policy
from dialogue.checks import Checks
from dialogue.confirm import confirm_text
from dialogue.engine import Assessment, assess, next_question
from dialogue.extract import Extractor, Mention, alarm_findings, extractor
from dialogue.facts import Facts
from dialogue.protocols import URGENCY, Knowledge, Protocol, Question, knowledge
from dialogue.readback import Snapshot
from dialogue.result import TriageResult, build_result
from dialogue.screen import ScreenAsk
from dialogue.slots import slot_answer
from dialogue.summary import sbar
from voice.conversation import (
    CallerUtterance,
    DialogueOutput,
    EndCall,
    Escalate,
    ExpectAnswer,
    HoldForNurse,
    Outcome,
    Say,
    Transfer,
)
from voice.events import CallInfo

log = logging.getLogger("carecall.dialogue.triage")

__all__ = ["PendingQuestion", "TriageDialogue", "TriageResult", "triage_text"]


@dataclass(frozen=True, slots=True)
class PendingQuestion:
    """What the bot's last question asks (for simulated callers and tests): `id` is "consent",
    "complaint", "transfer_offer" or "<protocol>.<question>"; a "yes" confirms any of `findings`."""

    id: str
    kind: str
    findings: tuple[str, ...] = ()
    slot: str | None = None


def triage_text(text: str, lang: str) -> TriageResult:
    """Single-shot triage of one statement (whatever it does not say counts as not reported). Pure."""
    lang = "zh" if lang == "zh" else "en"
    kn = knowledge()
    facts = Facts()
    facts.add(extractor(lang).extract(text), 0, text)
    return build_result(lang, facts, assess(facts, kn), kn)


class _Base:
    """What triage and follow-up calls share: language data, facts, red-flag escalation, silence."""

    mode = "triage"

    def __init__(
        self,
        info: CallInfo,
        *,
        emergency_number: str,
        assist: LLMAssist | None = None,
        kn: Knowledge | None = None,
        max_silence_reprompts: int = 2,
    ) -> None:
        self.info = info
        self.lang = "zh" if info.language == "zh" else "en"
        self.kn = kn or knowledge()
        self.x: Extractor = extractor(self.lang)
        self.emergency = emergency_number
        self.assist = assist if assist is not None and assist.capable else None
        self.max_silence_reprompts = max_silence_reprompts
        self.facts = Facts()
        self.escalated: list[str] = []
        self.escalation_level: str | None = None
        self.actions: list[str] = []
        self.transferred = False
        self.ended: str | None = None
        self.last_prompt = ""
        self.last_kind = "free"
        self.heard_text: str | None = None
        self.turn_mentions: set[str] = set()
        self.turn_found: dict[str, Mention] = {}  # this turn's lexicon verdicts, present or denied
        self.phase = "start"
        self.questions_put = 0  # every question put to the caller (protocol, screen, confirmations, read-backs)
        self.holding = False  # escalated and silent: the line is held open for a nurse

    # --- language helpers ------------------------------------------------------------------------
    def t(self, key: str, **kw: Any) -> str:
        texts = self.kn.phrases[self.lang].texts
        if key not in texts:  # the confirmation / read-back / hold wording (prompts/<lang>/confirm.yaml)
            return confirm_text()[self.lang].texts[key].format(emergency=self.emergency, **kw)
        return texts[key].format(emergency=self.emergency, **kw)

    def ask(self, text: str, kind: str) -> list[DialogueOutput]:
        self.last_prompt, self.last_kind = text, kind
        self.questions_put += 1
        return [ExpectAnswer(kind), text]  # type: ignore[arg-type]

    # --- understanding ---------------------------------------------------------------------------
    async def understand(self, utt: CallerUtterance) -> list[str]:
        """Rule extraction (authoritative), plus the LLM's reading when capable. Returns new findings."""
        ext = self.x.extract(utt.text)
        self.turn_found = ext.findings()
        self.turn_mentions = set(self.turn_found)
        new = self.facts.add(ext, utt.turn_index, utt.text)
        if self.assist is not None:
            llm = await self.assist.extract(utt.text, self.lang, self.kn.catalog.findings)
            if llm is not None:
                rules = {f: m.present for f, m in ext.findings().items()}
                rf_ids: set[str] = set()
                for rf in self.kn.red_flags:
                    rf_ids |= rf.when.finding_ids()
                self.assist.compare(rules, llm, rf_ids)
                policy = llm_policy(llm, rules, set(self.facts.findings), alarm_findings())
                for fid in policy.add:  # what the rules missed; never an absence, never a red flag on its own
                    self.facts.set_finding(fid, True, utt.turn_index, utt.text, "", source="llm")
                    self.turn_mentions.add(fid)
                    new.append(fid)
                for fid in policy.suspect:  # a red flag only the LLM read: confirmed by the bot first
                    self.facts.suspect(fid, utt.turn_index, utt.text, "", 0.5, source="llm")
        return new

    def red_flag_outputs(self, a: Assessment) -> list[DialogueOutput]:
        fresh = [f for f in a.red_flags if f.id not in self.escalated]
        if not fresh:
            return []
        self.escalated += [f.id for f in fresh]
        level = max((f.level for f in a.red_flags), key=lambda d: URGENCY[d])
        self.escalation_level = level
        self.actions.append(f"escalated:{level}")
        labels = [self.kn.phrases[self.lang].red_flags[f.id] for f in fresh]
        action = self.t("red_flag_ambulance" if level == "emergency_ambulance" else "red_flag_emergency")
        out: list[DialogueOutput] = [
            Say(self.t("red_flag_intro") + " " + action, protected=True),  # finished or repeated, never lost
            Escalate(reason="; ".join(labels), red_flags=tuple(f.id for f in a.red_flags), level=level),  # type: ignore[arg-type]
        ]
        if not self.transferred:
            self.actions.append("transfer_offered")
            out += self.ask(self.t("offer_transfer"), "yes_no")
            self.phase = "transfer_offer"
        return out

    def transfer(self, reason: str) -> list[DialogueOutput]:
        self.transferred = True
        self.actions.append("transferred")
        return [self.t("transferring"), Transfer(reason=reason), Outcome(self.result())]

    # --- the protocol methods shared ---------------------------------------------------------------
    async def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        if self.ended:
            return
        if self.escalated:
            # escalation never abandons the caller: a silent caller may have collapsed. Re-prompt, then hold
            # the line open for a nurse (console alert); the bot never ends this call on silence.
            for out in self.hold_outputs(count):
                yield out
            return
        if count <= self.max_silence_reprompts:
            yield self.t("silence_reprompt")
            if self.last_prompt:
                yield ExpectAnswer(self.last_kind)  # type: ignore[arg-type]
                yield self.last_prompt
            return
        self.ended = "silence"
        yield self.t("silence_end")
        yield Outcome(self.result())
        yield EndCall("silence")

    def hold_outputs(self, count: int) -> list[DialogueOutput]:
        if count < self.max_silence_reprompts and not self.holding:
            out: list[DialogueOutput] = [self.t("silence_escalated")]
            if self.last_prompt:
                out += [ExpectAnswer(self.last_kind), self.last_prompt]  # type: ignore[list-item]
            return out
        if self.holding:
            return [self.t("hold_reprompt")]
        self.holding = True
        self.actions.append("hold_for_nurse")
        flags = tuple(self.escalated)
        reason = "caller silent after escalation: line held open for a nurse"
        return [
            self.t("hold_for_nurse"),
            HoldForNurse(reason=reason, red_flags=flags),
            Escalate(reason=reason, red_flags=flags, level="nurse"),
            Outcome(self.result()),
        ]

    async def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]:
        words = {"zh": {"1": "是", "2": "没有", "0": "转人工"}, "en": {"1": "yes", "2": "no", "0": "nurse please"}}
        text = words[self.lang].get(digit)
        if text is None:
            return
        async for out in self.respond(CallerUtterance(text=text, turn_index=-1)):
            yield out

    def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:  # pragma: no cover
        raise NotImplementedError

    def heard(self, text: str, interrupted: bool) -> None:
        self.heard_text = text if interrupted else None

    def result(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


class TriageDialogue(Checks, _Base):
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

    async def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        if self.ended:
            return
        for out in await self._respond(utterance):
            yield out

    async def _respond(self, utt: CallerUtterance) -> list[DialogueOutput]:
        text = utt.text.strip()
        if not text:
            return []
        if self.x.intent("transfer", text):
            return self.transfer("caller asked for a person")
        if self.x.intent("repeat", text) and len(text) < 40:
            return [ExpectAnswer(self.last_kind), self.last_prompt] if self.last_prompt else []  # type: ignore[list-item]
        answer = self.x.answer(text)
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
                if self.x.intent("stop", text) or self.complaint_tries >= 3:
                    return self.conclude()
                if self.assist is not None and not new:
                    prefix.append(
                        await self.assist.offscript(text, self.t("ask_complaint"), self.lang, self.t("offtopic"))
                    )
                elif not new and self.complaint_tries == 2:
                    prefix.append(self.t("offtopic"))
                return [*prefix, *self.ask(self.t("ask_complaint_again"), "free")]

        return [*prefix, *await self.next_step(self.x.intent("correction", text))]

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
            if q.finding in self.turn_mentions:
                pass  # the caller's own words said it ("no chest pain"): they win over a bare yes/no
            elif answer in ("yes", "no"):
                self.facts.set_finding(q.finding, answer == "yes", utt.turn_index, utt.text, utt.text, source="answer")
            elif not new and not self.retried:
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

    def state(self) -> dict[str, Any]:
        a = self.assessment
        return {
            "mode": "triage",
            "disposition": a.disposition,
            "department": a.department,
            "chief_complaint": a.chief_complaint,
            "red_flags": [f.id for f in a.red_flags],
        }

    def result(self) -> dict[str, Any]:
        a = self.assessment = assess(self.facts, self.kn)
        r = build_result(self.lang, self.facts, a, self.kn).to_dict()
        ph = self.kn.phrases[self.lang]
        actions = [self._action_label(x) for x in self.actions]
        situation = ph.texts["sbar_situation"].format(
            complaint=r["chief_complaint_name"] or ph.texts["sbar_none"],
            disposition=ph.dispositions[a.disposition].format(emergency=self.emergency).rstrip(".。"),
            department=ph.departments[a.department],
        )
        r["summary"] = sbar(
            self.lang,
            self.kn,
            self.facts,
            situation=situation,
            red_flags=r["red_flags"],
            alarms=[],
            advice=self.advice(),
            actions=actions,
        )
        r.update(
            mode="triage",
            call_id=self.info.call_id,
            escalated=bool(self.escalated),
            escalation_level=self.escalation_level,
            transferred=self.transferred,
            questions_asked=sorted(self.asked),
            questions_total=self.questions_put,
            held_for_nurse=self.holding,
            end_reason=self.ended,
            llm_disagreements=list(self.assist.disagreements) if self.assist else [],
            **self.check_results(),
        )
        return r

    def _action_label(self, action: str) -> str:
        t = {**confirm_text()[self.lang].texts, **self.kn.phrases[self.lang].texts}
        name, _, level = action.partition(":")
        return t[f"action_{name}"].format(level=level) if f"action_{name}" in t else action
