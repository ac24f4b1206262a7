"""The LLM-assist path, with a fake that follows the ChatModel protocol of dialogue/llm.py exactly
(a `capable` property, `stream` an async generator of text deltas, `complete_json` returning a parsed
object, LLMUnavailable on failure). The real llama.cpp / vLLM path is tested with the client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dialogue.assist import LLMAssist
from dialogue.factory import build_dialogue_factory
from dialogue.guard import check, guarded
from dialogue.llm import ChatModel, LLMUnavailable
from voice.conversation import CallerUtterance, Escalate
from voice.events import CallInfo


class FakeChatModel:
    def __init__(
        self, *, capable: bool, json_reply: dict[str, Any] | None = None, text_reply: str = "", fail: bool = False
    ) -> None:
        self._capable = capable
        self.json_reply = json_reply or {"findings": []}
        self.text_reply = text_reply
        self.fail = fail
        self.calls: list[tuple[str, list[dict[str, str]]]] = []

    @property
    def capable(self) -> bool:
        return self._capable

    async def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 200, temperature: float = 0.3
    ) -> AsyncIterator[str]:
        self.calls.append(("stream", messages))
        if self.fail:
            raise LLMUnavailable("chat stream failed: ConnectError")
        for word in self.text_reply.split(" "):
            yield word + " "

    async def complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, max_tokens: int = 400
    ) -> dict[str, Any]:
        self.calls.append(("json", messages))
        assert schema["type"] == "object" and "findings" in schema["properties"]
        if self.fail:
            raise LLMUnavailable("JSON completion failed: ConnectError")
        return self.json_reply


def _protocol_check(model: ChatModel) -> ChatModel:
    return model  # type-checks that the fake satisfies the protocol


def _dialogue(model: FakeChatModel, llm_capable: bool = True, lang: str = "en") -> Any:
    factory = build_dialogue_factory(
        chat_model=_protocol_check(model), emergency_numbers={"en": "911", "zh": "120"}, llm_capable=llm_capable
    )
    return factory(CallInfo(call_id="llm-test", language=lang, channel="text"))  # type: ignore[arg-type]


async def _say(d: Any, text: str, turn: int) -> list[Any]:
    return [o async for o in d.respond(CallerUtterance(text=text, turn_index=turn))]


async def test_incapable_model_is_never_called_for_clinical_content() -> None:
    for capable, setting in ((False, True), (True, False)):
        model = FakeChatModel(capable=capable, json_reply={"findings": [{"id": "chest_pain", "present": True}]})
        d = _dialogue(model, llm_capable=setting)
        [o async for o in d.opening()]
        await _say(d, "yes", 1)
        await _say(d, "I feel a bit off", 2)
        assert model.calls == []
        assert d.result().to_json()["chief_complaint"] is None


async def test_llm_findings_add_to_rules_and_disagreements_are_logged_without_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FakeChatModel(
        capable=True,
        json_reply={"findings": [{"id": "vomiting", "present": True}, {"id": "nosuchthing", "present": True}]},
        text_reply="Could you tell me more?",
    )
    d = _dialogue(model)
    [o async for o in d.opening()]
    await _say(d, "yes", 1)
    with caplog.at_level(logging.INFO, logger="carecall.dialogue.assist"):
        await _say(d, "I have a tummy ache and I keep bringing everything back up", 2)
    facts = {f["id"]: f for f in d.result().to_json()["findings"]}
    assert facts["abdominal_pain"]["source"] == "rules"
    assert facts["vomiting"]["source"] == "llm" and facts["vomiting"]["present"]
    assert "nosuchthing" not in facts
    assert d.result().to_json()["llm_disagreements"][0]["llm_only"] == ["vomiting"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "vomiting" in logged and "tummy" not in logged and "bringing" not in logged


async def test_rules_stay_authoritative_for_red_flags() -> None:
    # the LLM says "no chest pain", the caller's words say otherwise: the red flag still fires
    model = FakeChatModel(
        capable=True,
        json_reply={"findings": [{"id": "chest_pain", "present": False}, {"id": "sweating", "present": False}]},
    )
    d = _dialogue(model)
    [o async for o in d.opening()]
    out = await _say(d, "crushing chest pain and I'm sweating", 1)
    assert any(isinstance(o, Escalate) and "cardiac_chest_pain" in o.red_flags for o in out)
    assert d.result().to_json()["llm_disagreements"][0]["conflict"] == ["chest_pain", "sweating"]


async def test_rephrased_question_is_used_only_when_the_guard_passes() -> None:
    safe = FakeChatModel(capable=True, text_reply="Is it hard to swallow even your own spit?")
    d = _dialogue(safe)
    [o async for o in d.opening()]
    await _say(d, "yes", 1)
    out = await _say(d, "my throat is sore", 2)
    assert "Is it hard to swallow even your own spit?" in " ".join(o for o in out if isinstance(o, str))

    unsafe = FakeChatModel(capable=True, text_reply="You probably have strep throat, take 500 mg amoxicillin.")
    d = _dialogue(unsafe)
    [o async for o in d.opening()]
    await _say(d, "yes", 1)
    out = await _say(d, "my throat is sore", 2)
    said = " ".join(o for o in out if isinstance(o, str))
    assert "amoxicillin" not in said and "saliva" in said  # the template


async def test_off_script_turn_gets_a_guarded_reply_then_the_question_again() -> None:
    model = FakeChatModel(capable=True, text_reply="I understand, that sounds worrying.")
    d = _dialogue(model)
    [o async for o in d.opening()]
    await _say(d, "yes", 1)
    out = await _say(d, "I have a headache", 2)
    question = [o for o in out if isinstance(o, str)][-1]
    out = await _say(d, "my neighbour's dog kept me up all night", 3)
    said = [o for o in out if isinstance(o, str)]
    assert said[0] == "I understand, that sounds worrying."
    assert said[-1] in (question, "I understand, that sounds worrying.") or "?" in said[-1]

    unsafe = FakeChatModel(capable=True, text_reply="It might be a migraine, take 2 tablets of ibuprofen.")
    d = _dialogue(unsafe)
    [o async for o in d.opening()]
    await _say(d, "yes", 1)
    await _say(d, "I have a headache", 2)
    out = await _say(d, "my neighbour's dog kept me up all night", 3)
    said = " ".join(o for o in out if isinstance(o, str))
    assert "ibuprofen" not in said and "migraine" not in said and "yes or a no" in said


async def test_llm_unavailable_falls_back_to_rules_and_templates() -> None:
    model = FakeChatModel(capable=True, fail=True)
    d = _dialogue(model, lang="zh")
    [o async for o in d.opening()]
    await _say(d, "可以", 1)
    out = await _say(d, "我嗓子疼", 2)
    assert "口水" in " ".join(o for o in out if isinstance(o, str))
    assert d.result().to_json()["chief_complaint"] == "sore_throat"


async def test_summary_polish_is_guarded() -> None:
    assist = LLMAssist(FakeChatModel(capable=True, text_reply="这是链球菌性咽炎，建议吃头孢。"))
    assert await assist.polish("S: 中文分诊来电。", "zh") == "S: 中文分诊来电。"
    assist = LLMAssist(FakeChatModel(capable=True, text_reply="S: sore throat for two days, no fever."))
    assert await assist.polish("S: sore throat 2 days", "en") == "S: sore throat for two days, no fever."


@pytest.mark.parametrize(
    ("lang", "text", "ok"),
    [
        ("en", "You have pneumonia.", False),
        ("en", "It sounds like a heart attack.", False),
        ("en", "Take 400 mg of ibuprofen every 6 hours.", False),
        ("en", "There's no need to see a doctor.", False),
        ("en", "Thank you. How long has the pain been there?", True),
        ("zh", "您得了肺炎。", False),
        ("zh", "可能是阑尾炎。", False),
        ("zh", "吃两片布洛芬就好了。", False),
        ("zh", "不用去医院。", False),
        ("zh", "谢谢您。疼了多长时间了？", True),
    ],
)
def test_guard(lang: str, text: str, ok: bool) -> None:
    assert check(text, lang).ok is ok
    assert guarded(text, "TEMPLATE", lang)[0] == (text if ok else "TEMPLATE")
