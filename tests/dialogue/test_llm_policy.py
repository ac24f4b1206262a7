"""With a capable LLM (CARECALL_LLM_CAPABLE=true) its reading goes through the same policy as the semantic
layer: it may raise suspicions that the bot confirms, it never lowers urgency (dialogue.assist.llm_policy).
The model here is a scripted fake of the ChatModel protocol (the real one cannot run on every machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dialogue.assist import llm_policy
from dialogue.extract import alarm_findings
from dialogue.factory import build_dialogue_factory
from dialogue.protocols import URGENCY
from voice.conversation import CallerUtterance, Escalate
from voice.events import CallInfo


class ScriptedModel:
    """Answers every findings request with the same JSON; says a short sentence when asked to talk."""

    def __init__(self, findings: dict[str, bool]) -> None:
        self.reply = {"findings": [{"id": k, "present": v} for k, v in findings.items()]}

    @property
    def capable(self) -> bool:
        return True

    async def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 200, temperature: float = 0.3
    ) -> AsyncIterator[str]:
        yield "Thank you. "

    async def complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, max_tokens: int = 400
    ) -> dict[str, Any]:
        return self.reply


async def _call(findings: dict[str, bool], text: str, lang: str = "en") -> tuple[Any, list[Any]]:
    factory = build_dialogue_factory(
        chat_model=ScriptedModel(findings), emergency_numbers={"en": "911", "zh": "120"}, llm_capable=True
    )
    d = factory(CallInfo(call_id="policy", language=lang, channel="text"))  # type: ignore[arg-type]
    [o async for o in d.opening()]
    [o async for o in d.respond(CallerUtterance(text="yes", turn_index=1))]
    out = [o async for o in d.respond(CallerUtterance(text=text, turn_index=2))]
    return d, out


async def test_an_llm_red_flag_is_suspected_and_confirmed_not_escalated_on_its_own() -> None:
    d, out = await _call({"seizure": True}, "my son had a fit two years ago, can epilepsy be cured?")
    assert not any(isinstance(o, Escalate) for o in out)
    assert "seizure" in d.facts.suspected()
    assert d.facts.suspicion("seizure").source == "llm"


async def test_the_llm_never_lowers_urgency() -> None:
    # the caller's words are a red flag; the LLM denies everything: the red flag stands
    d, out = await _call({"chest_pain": False, "sweating": False}, "crushing chest pain and I'm drenched in sweat")
    assert any(isinstance(o, Escalate) for o in out)
    # the LLM names a harmless complaint for words the rules did not understand: the fail-safe floor stays
    d, _ = await _call({"runny_nose": True}, "I just feel a bit off, not myself")
    assert URGENCY[d.assessment.disposition] >= URGENCY["consultation_24"], d.assessment.disposition


def test_policy_rules() -> None:
    alarm = alarm_findings()
    p = llm_policy({"overdose": True, "cough": True, "fever": False}, rules={}, known=set(), alarm=alarm)
    assert p.suspect == ("overdose",) and p.add == ("cough",)
    # what the caller's own words deny is not suspected, nor re-added
    p = llm_policy(
        {"overdose": True, "cough": True}, rules={"overdose": False, "cough": False}, known=set(), alarm=alarm
    )
    assert p == llm_policy({}, {}, set(), alarm)
    # already known from an earlier turn: not written again
    assert llm_policy({"cough": True}, rules={}, known={"cough"}, alarm=alarm).add == ()
