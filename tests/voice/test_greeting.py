"""A short greeting: the caller may speak within ~4 s; the widget (consent given on the page) skips the
consent question and asks for the problem at once."""

from __future__ import annotations

import pytest

from dialogue.knowledge import knowledge
from dialogue.triage import TriageDialogue
from tests.voice.fakes import FakeSynthesizer, Scenario, ScriptedDialogue, Speech, run_scenario
from tests.voice.virtual_time import run_virtual
from voice.call import TurnTaking
from voice.conversation import CallerUtterance, ExpectAnswer
from voice.events import CallInfo
from voice.tts.spoken import spoken


async def opening(params: dict[str, str], lang: str = "en") -> list[object]:
    d = TriageDialogue(CallInfo("c", lang, "webrtc", params=params), emergency_number="911")  # type: ignore[arg-type]
    return [o async for o in d.opening()]


async def test_the_widget_caller_is_asked_for_the_problem_straight_away() -> None:
    out = await opening({"consent": "page"})
    assert ExpectAnswer("free") in out
    text = " ".join(o for o in out if isinstance(o, str))
    # The page told the caller about the recording and that the assistant does not diagnose.
    assert "main problem" in text and "recorded" not in text
    d = TriageDialogue(CallInfo("c", "en", "webrtc", params={"consent": "page"}), emergency_number="911")
    _ = [o async for o in d.opening()]
    reply = [o async for o in d.respond(CallerUtterance("No.", 0))]  # not a consent refusal: nothing was asked
    assert not any(getattr(o, "reason", "") == "consent_declined" for o in reply)


async def test_a_phone_caller_still_hears_the_recording_notice_and_consent() -> None:
    out = await opening({})
    assert ExpectAnswer("yes_no") in out
    assert "recorded" in " ".join(o for o in out if isinstance(o, str))


TRIAGE_GREETINGS = ("greeting", "greeting_page_consent")  # the phone caller's, the widget caller's


@pytest.mark.models
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_every_triage_greeting_lets_the_caller_speak_within_four_seconds(lang: str, piper_tts, zh_tts) -> None:  # type: ignore[no-untyped-def]
    # Synthesised as the call speaks it, clause by clause with the voice's pauses (voice.tts.spoken); the
    # caller may answer once the last word is out, and the call listens all along.
    tts = piper_tts if lang == "en" else zh_tts
    texts = knowledge().phrases[lang].texts
    for key in TRIAGE_GREETINGS:
        said = await spoken(tts, texts[key], lang)
        assert said.seconds <= 4.0, (key, said)
        assert said.speech_end_s > said.seconds - 0.5, said  # the measure is of speech, not of silence

OK, MM = 150.0, 250.0
QUESTION = "OK to continue?"  # 15 characters: 0.75 s of the fake voice's tone, then its trailing silence


def answer_in_the_tail(speech: Speech) -> list[str]:
    """The utterances the dialogue got when the caller spoke `speech` around the end of the question."""
    d = ScriptedDialogue({"OK.": ["Thank you."], "Mm.": ["Thank you."]}, opening=[ExpectAnswer("yes_no"), QUESTION])
    tt = TurnTaking(partial_interval_s=0.0, backchannels={"en": frozenset({"ok", "mm"})})
    sc = Scenario([speech], d, {OK: "OK.", MM: "Mm."}, synthesizer=FakeSynthesizer(tail_s=0.6), turn_taking=tt,
                  duration_s=5)
    o = run_virtual(run_scenario(sc))
    assert next(t.text for t in o.turns() if t.speaker == "bot") == QUESTION
    return d.utterances


def test_an_answer_in_the_voices_trailing_silence_answers_the_question() -> None:
    # The question's last word is heard at ~0.9 s; the voice's silence after it plays until ~1.5 s.
    # "OK", the natural answer to "OK to continue?", is a backchannel while the bot talks: said in that
    # silence it must still reach the dialogue (it was dropped, and the caller waited for a re-prompt).
    assert answer_in_the_tail(Speech(1.0, 1.4, OK)) == ["OK."]


def test_a_backchannel_over_the_question_itself_is_still_only_a_backchannel() -> None:
    assert answer_in_the_tail(Speech(0.3, 0.6, MM)) == []
