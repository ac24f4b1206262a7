"""End of turn from the words: the rule (pure), and the real call loop acting on it (the shared fakes
on virtual time, tests/voice/fakes.py)."""

from __future__ import annotations

import pytest

from tests.voice.fakes import Scenario, ScriptedDialogue, Speech, run_scenario, vowel
from tests.voice.virtual_time import run_virtual
from voice.audio import Pcm
from voice.call import TurnTaking
from voice.conversation import ExpectAnswer
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded, SpeechPaused
from voice.turn_end import verdict

SAID = 150.0  # the pitch of the caller's speech (tests/voice/fakes.py)

CASES = [
    ("Yes.", "en", "yes_no", "complete"),
    ("No, I don't.", "en", "yes_no", "complete"),
    ("About two days.", "en", "duration", "complete"),
    ("38.5", "en", "number", "complete"),
    ("And then my...", "en", "free", "unfinished"),
    ("I have chest pain and", "en", "free", "unfinished"),
    ("No, but", "en", "yes_no", "unfinished"),
    ("I have had a sore throat since yesterday.", "en", "free", "unknown"),
    ("No, but I do have a crushing pain in my chest.", "en", "yes_no", "unknown"),  # more than an answer
    ("Yes.", "en", "free", "unknown"),  # nothing pending that "yes" answers
    ("是的。", "zh", "yes_no", "complete"),
    ("没有。", "zh", "yes_no", "complete"),
    ("三十八度五", "zh", "number", "complete"),
    ("大概两天。", "zh", "duration", "complete"),
    ("然后…", "zh", "free", "unfinished"),
    ("我胸口疼，然后", "zh", "free", "unfinished"),
    ("我胸口疼，", "zh", "yes_no", "unfinished"),
    ("我嗓子疼，从昨天开始的。", "zh", "free", "unknown"),
    ("", "en", "yes_no", "unknown"),
    # a turn that is only a greeting: the caller is about to say why they called (issue 12)
    ("Hello!", "en", "free", "unfinished"),
    ("Hi there, hello?", "en", "yes_no", "unfinished"),
    ("Hello, I have chest pain.", "en", "free", "unknown"),
    ("喂，你好。", "zh", "free", "unfinished"),
    ("你好，我胸口疼。", "zh", "free", "unknown"),
]


@pytest.mark.parametrize(("text", "lang", "kind", "expected"), CASES)
def test_verdict_reads_the_words_against_the_pending_question(text: str, lang: str, kind: str,
                                                             expected: str) -> None:
    assert verdict(text, lang, kind) == expected


def feed(ep: Endpointer, audio: Pcm, chunk: int = 320) -> list[object]:
    events: list[object] = []
    for i in range(0, len(audio), chunk):
        events += ep.feed(Pcm(audio.samples[i : i + chunk], 16000))
    return events


@pytest.mark.parametrize(("decision", "wait_ms"), [("complete", 240), ("unfinished", 1200), ("unknown", 500)])
def test_the_endpointer_acts_on_a_decision_at_the_pause(decision: str, wait_ms: int) -> None:
    ep = Endpointer(EndpointerConfig(silence_ms=500, pause_ms=240, unfinished_hold_ms=1200))
    events = feed(ep, Pcm.concat([Pcm.silence(0.3, 16000), Pcm(vowel(SAID, 0, 16000), 16000)], 16000))
    for _ in range(0, 16000 * 2, 320):
        events += ep.feed(Pcm.silence(0.02, 16000))
        if any(isinstance(e, SpeechPaused) for e in events):
            ep.decide(decision)
            events = [e for e in events if not isinstance(e, SpeechPaused)]
        if any(isinstance(e, SpeechEnded) for e in events):
            break
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert (ended.decided_s - ended.speech_end_s) * 1000 == pytest.approx(wait_ms, abs=25)


def endpoint_wait_ms(kind: str, words: str, speech_s: float = 2.0, *, text_turn_end: bool = True) -> float:
    """The real call loop on virtual time: "A question?" (0.05-0.6 s), then `speech_s` of speech that the
    recogniser (20 ms a decode) hears as `words`; the endpoint wait of the caller's turn."""
    dialogue = ScriptedDialogue({words: ["Thanks."]}, opening=[ExpectAnswer(kind), "A question?"])  # type: ignore[arg-type]
    sc = Scenario([Speech(1.0, 1.0 + speech_s, SAID)], dialogue, {SAID: words}, asr_s=0.02,
                  turn_taking=TurnTaking(partial_interval_s=0, text_turn_end=text_turn_end), duration_s=speech_s + 5)
    o = run_virtual(run_scenario(sc))
    (turn,) = [t for t in o.turns() if t.speaker == "caller"]
    assert turn.text == words
    assert turn.metrics is not None and turn.metrics.endpoint_wait_ms is not None
    return turn.metrics.endpoint_wait_ms


def test_an_answer_that_satisfies_the_question_ends_the_turn_at_the_pause() -> None:
    with_rule = endpoint_wait_ms("number", "Thirty eight point five, I think.")
    without = endpoint_wait_ms("number", "Thirty eight point five, I think.", text_turn_end=False)
    assert with_rule <= 300 < without  # 2 s of speech is past the short-answer wait: 500 ms without the rule


def test_an_unfinished_clause_holds_the_turn_open() -> None:
    assert endpoint_wait_ms("free", "And then my") >= 1150
    assert endpoint_wait_ms("free", "Hello?") >= 1150  # a lone greeting: more is coming
    assert endpoint_wait_ms("free", "I have a sore throat.") == pytest.approx(500, abs=30)
