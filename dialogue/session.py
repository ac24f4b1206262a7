"""`DialogueSession`: the base that `TriageDialogue` (dialogue/triage.py) and `FollowUpDialogue`
(dialogue/followup.py) extend, one per call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dialogue.answers import AnswerReader, answer_reader
from dialogue.assist import LLMAssist, llm_policy
from dialogue.confirm import confirm_text
from dialogue.engine import Assessment
from dialogue.extract import Extractor, Mention, alarm_findings, extractor
from dialogue.facts import Facts
from dialogue.knowledge import Knowledge, knowledge
from dialogue.protocols import URGENCY
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
from voice.languages import languages
from voice.result import CallResult, Mode, Sbar


class DialogueSession:
    """What a triage call and a follow-up call share: the call's language data, its facts, understanding
    (rules, then the LLM when capable), red-flag escalation with the transfer offer, silence and the hold
    for a nurse, key presses, and the parts of the result both give. A mode extends it with its own
    `opening`, `respond` and `result`."""

    mode: Mode = "triage"

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
        self.lang = languages.or_fallback(info.language).code
        self.kn = kn or knowledge()
        self.x: Extractor = extractor(self.lang)
        self.answer_reader: AnswerReader = answer_reader(self.lang)
        self.emergency = emergency_number
        self.assist = assist if assist is not None and assist.capable else None
        self.max_silence_reprompts = max_silence_reprompts
        self.facts = Facts(self.lang)
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
                self.assist.compare(rules, llm, self.kn.red_flag_findings())
                policy = llm_policy(llm, rules, set(self.facts.findings), alarm_findings())
                for fid in policy.add:  # what the rules missed; never an absence, never a red flag on its own
                    self.facts.set_finding(fid, True, utt.turn_index, utt.text, "", source="llm")
                    self.turn_mentions.add(fid)
                    new.append(fid)
                for fid in policy.suspect:  # a red flag only the LLM read: confirmed by the bot first
                    self.facts.suspect(fid, utt.turn_index, utt.text, "", 0.5, source="llm")
        return new

    def yes_no_answer(self, finding: str | None, utt: CallerUtterance, answer: str | None) -> bool | None:
        """The answer to a yes/no question about `finding` (protocol or questionnaire): the caller's own
        words about it ("no chest pain") win over a bare yes/no; a bare yes/no is stored as the finding.
        None: the turn did not answer it."""
        if finding and finding in self.turn_mentions:
            return self.facts.present(finding)
        if answer not in ("yes", "no"):
            return None
        if finding:
            self.facts.set_finding(finding, answer == "yes", utt.turn_index, utt.text, utt.text, source="answer")
        return answer == "yes"

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
                out += [ExpectAnswer(self.last_kind), self.last_prompt]  # type: ignore[list-item,arg-type]
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
        text = languages.or_fallback(self.lang).dtmf_words.get(digit)  # prompts/<lang>/language.yaml
        if text is None:
            return
        async for out in self.respond(CallerUtterance(text=text, turn_index=-1)):
            yield out

    async def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        """The reply to one caller turn (the dialogue's `_respond`); nothing once the dialogue has ended."""
        if self.ended:
            return
        for out in await self._respond(utterance):
            yield out

    async def _respond(self, utt: CallerUtterance) -> list[DialogueOutput]:  # pragma: no cover
        raise NotImplementedError

    def heard(self, text: str, interrupted: bool) -> None:
        self.heard_text = text if interrupted else None

    def result(self) -> CallResult:  # pragma: no cover
        raise NotImplementedError

    # --- the result's shared parts ---------------------------------------------------------------
    def action_labels(self) -> tuple[str, ...]:
        """What was done, in the call's language (prompts/<lang>/dialogue.yaml and confirm.yaml `action_*`)."""
        t = {**confirm_text()[self.lang].texts, **self.kn.phrases[self.lang].texts}
        out = []
        for action in self.actions:
            name, _, level = action.partition(":")
            out.append(t[f"action_{name}"].format(level=level) if f"action_{name}" in t else action)
        return tuple(out)

    def handover(self, *, situation: str, red_flags: list[str], alarms: list[str], advice: str) -> Sbar:
        return sbar(
            self.lang, self.kn, self.facts, situation=situation, red_flags=red_flags, alarms=alarms,
            advice=advice, actions=list(self.action_labels()),
        )  # fmt: skip
