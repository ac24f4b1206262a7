"""Triage: `triage_text` for one statement, and `TriageDialogue`, the per-call protocol conversation
(greeting and consent → chief complaint → the protocol's open questions → disposition, department and
safety-net advice → close), with red flags checked on every caller turn and overriding everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from dialogue.assist import LLMAssist
from dialogue.engine import Assessment, assess, next_question
from dialogue.extract import Extractor, extractor
from dialogue.facts import Facts
from dialogue.protocols import URGENCY, Knowledge, Protocol, Question, knowledge
from dialogue.result import TriageResult, build_result
from dialogue.slots import slot_answer
from dialogue.summary import sbar
from voice.conversation import (
    CallerUtterance,
    DialogueOutput,
    EndCall,
    Escalate,
    ExpectAnswer,
    Outcome,
    Transfer,
)
from voice.events import CallInfo

log = logging.getLogger("carecall.dialogue.triage")

__all__ = ["TriageDialogue", "TriageResult", "triage_text"]


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
        self.phase = "start"

    # --- language helpers ------------------------------------------------------------------------
    def t(self, key: str, **kw: Any) -> str:
        return self.kn.phrases[self.lang].texts[key].format(emergency=self.emergency, **kw)

    def ask(self, text: str, kind: str) -> list[DialogueOutput]:
        self.last_prompt, self.last_kind = text, kind
        return [ExpectAnswer(kind), text]  # type: ignore[arg-type]

    # --- understanding ---------------------------------------------------------------------------
    async def understand(self, utt: CallerUtterance) -> list[str]:
        """Rule extraction (authoritative), plus the LLM's reading when capable. Returns new findings."""
        ext = self.x.extract(utt.text)
        self.turn_mentions = set(ext.findings())
        new = self.facts.add(ext, utt.turn_index, utt.text)
        if self.assist is not None:
            llm = await self.assist.extract(utt.text, self.lang, self.kn.catalog.findings)
            if llm is not None:
                rules = {f: m.present for f, m in ext.findings().items()}
                rf_ids: set[str] = set()
                for rf in self.kn.red_flags:
                    rf_ids |= rf.when.finding_ids()
                self.assist.compare(rules, llm, rf_ids)
                for fid, present in llm.items():
                    if present and fid not in rules and fid not in self.facts.findings:
                        # the LLM may add what the rules missed, never overturn them, and never write down
                        # an absence (that would skip the protocol question that could find a red flag)
                        self.facts.set_finding(fid, True, utt.turn_index, utt.text, "", source="llm")
                        self.turn_mentions.add(fid)
                        new.append(fid)
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
            self.t("red_flag_intro") + " " + action,
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


class TriageDialogue(_Base):
    mode = "triage"

    def __init__(self, info: CallInfo, **kw: Any) -> None:
        super().__init__(info, **kw)
        self.asked: set[str] = set()
        self.pending: tuple[Protocol, Question] | None = None
        self.retried = False
        self.complaint_tries = 0
        self.assessment: Assessment = assess(self.facts, self.kn)
        self.summary: dict[str, Any] | None = None

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
        new = await self.understand(utt)
        reask: list[DialogueOutput] | None = None
        prefix: list[DialogueOutput] = []
        if self.phase == "questions" and self.pending is not None:
            reask = self._take_answer(utt, answer, new, prefix)
        self.assessment = assess(self.facts, self.kn)
        flags = self.red_flag_outputs(self.assessment)
        if flags:
            return [*prefix, *flags, Outcome(self.result())]
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
            self.ended = "red_flag"
            return [self.t("no_transfer"), self.t("after_red_flag_end"), Outcome(self.result()), EndCall("red_flag")]

        if self.phase == "consent":
            if answer == "no" and not new:
                self.ended = "consent_declined"
                return [self.t("consent_declined"), Outcome(self.result()), EndCall("consent_declined")]
            self.phase = "complaint"
            if not self.assessment.complaints:
                return self.ask(self.t("ask_complaint"), "free")

        elif self.phase == "complaint":
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

    async def next_step(self, corrected: bool = False) -> list[DialogueOutput]:
        self.assessment = assess(self.facts, self.kn)
        prefix: list[DialogueOutput] = [self.t("correction_ack")] if corrected else []
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
        self.assessment = assess(self.facts, self.kn)
        self.phase = "done"
        self.ended = "completed"
        out: list[DialogueOutput] = [self.t("result_intro") + " " + self.advice(), self.t("close")]
        if URGENCY[self.assessment.disposition] >= URGENCY["emergency"] and not self.escalated:
            level = self.assessment.disposition
            self.actions.append(f"escalated:{level}")
            out.insert(1, Escalate(reason="protocol disposition", level=level))  # type: ignore[arg-type]
        return [*out, Outcome(self.result()), EndCall("completed")]

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
            end_reason=self.ended,
            llm_disagreements=list(self.assist.disagreements) if self.assist else [],
        )
        return r

    def _action_label(self, action: str) -> str:
        t = self.kn.phrases[self.lang].texts
        name, _, level = action.partition(":")
        return t[f"action_{name}"].format(level=level) if f"action_{name}" in t else action
