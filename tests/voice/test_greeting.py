"""A short greeting: the caller may speak within ~4 s; the widget (consent given on the page) skips the
consent question and asks for the problem at once."""

from __future__ import annotations

import pytest

from dialogue.protocols import knowledge
from dialogue.triage import TriageDialogue
from voice.conversation import CallerUtterance, ExpectAnswer
from voice.events import CallInfo


async def opening(params: dict[str, str], lang: str = "en") -> list[object]:
    d = TriageDialogue(CallInfo("c", lang, "webrtc", params=params), emergency_number="911")  # type: ignore[arg-type]
    return [o async for o in d.opening()]


async def test_the_widget_caller_is_asked_for_the_problem_straight_away() -> None:
    out = await opening({"consent": "page"})
    assert ExpectAnswer("free") in out
    text = " ".join(o for o in out if isinstance(o, str))
    assert "main problem" in text and "not a doctor" in text
    d = TriageDialogue(CallInfo("c", "en", "webrtc", params={"consent": "page"}), emergency_number="911")
    _ = [o async for o in d.opening()]
    reply = [o async for o in d.respond(CallerUtterance("No.", 0))]  # not a consent refusal: nothing was asked
    assert not any(getattr(o, "reason", "") == "consent_declined" for o in reply)


async def test_a_phone_caller_still_hears_the_recording_notice_and_consent() -> None:
    out = await opening({})
    assert ExpectAnswer("yes_no") in out
    assert "recorded" in " ".join(o for o in out if isinstance(o, str))


@pytest.mark.models
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_greeting_lets_the_caller_speak_within_four_seconds(lang: str, piper_tts, zh_tts) -> None:  # type: ignore[no-untyped-def]
    tts = piper_tts if lang == "en" else zh_tts
    greeting = knowledge().phrases[lang].texts["greeting"]
    seconds = tts.synthesize_blocking(greeting).duration
    assert seconds <= 4.5, (greeting, seconds)
