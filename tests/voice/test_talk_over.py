"""A caller who goes on talking is not talked over: a turn whose transcript arrives while the caller is
speaking again is answered together with what follows, and the bot's audio is held the moment the caller
speaks over it (the real Call loop on the shared fakes and virtual time, tests/voice/fakes.py)."""

from __future__ import annotations

import pytest

from tests.voice.fakes import FakeSynthesizer, Outcome, Scenario, ScriptedDialogue, Speech, run_scenario
from tests.voice.virtual_time import run_virtual
from voice.call import TurnTaking
from voice.conversation import ExpectAnswer

HELLO, CHEST = 150.0, 200.0
TEXTS = {HELLO: "Hello!", CHEST: "I have crushing chest pain."}
GREETING, ADVICE = "Hello, this is CareCall.", "Call an ambulance now."


def test_a_lone_hello_followed_by_more_speech_is_answered_with_it() -> None:
    d = ScriptedDialogue({"Hello! I have crushing chest pain.": [ADVICE]}, opening=[ExpectAnswer("free"), GREETING])
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False)
    # "Hello!" (2.0-2.5 s) ends a turn at ~3.1 s; its transcript takes 1.5 s, and the caller goes on at 3.6 s
    sc = Scenario([Speech(2.0, 2.5, HELLO), Speech(3.6, 5.6, CHEST)], d, TEXTS, turn_taking=tt,
                  slow_finals={1: 1.5}, duration_s=10)
    o = run_virtual(run_scenario(sc))
    first_transcript = o.rel(o.recognizer.finished_at[0])
    assert 3.6 < first_transcript < 5.6  # it arrived while the caller was speaking again
    assert d.utterances == ["Hello! I have crushing chest pain."]  # answered once, not "Hello!" first
    assert [t.text for t in o.turns() if t.speaker == "bot"] == [GREETING, ADVICE]
    (caller,) = [t for t in o.turns() if t.speaker == "caller"]
    assert caller.text == "Hello! I have crushing chest pain."
    assert caller.start_s < 2.1  # the turn starts where "Hello!" did


# --- the bot is held the moment the caller talks over it (TurnTaking.barge_in_hold, issue 12) ----------------
# Over WebRTC the bot's voice is the browser echo canceller's reference: words said over it came out garbled
# ("crushing chest pain" heard as "This paint is"). The loop holds the bot at the caller's speech start, so
# what the caller says next meets silence; a barge-in then cuts the bot, a backchannel lets it go on.
MMHM = 250.0
LONG_GREETING = "Hello, this is CareCall. What is the main problem today?"  # 2.8 s of the fake voice


def bot_audio(o: Outcome, start: float, end: float) -> list[float]:
    """When bot audio went out between `start` and `end` (call seconds)."""
    return [o.rel(t) for t in o.transport.audio_times() if start <= o.rel(t) < end]


def test_speech_over_the_bot_holds_it_at_once_and_a_backchannel_lets_it_go_on() -> None:
    def run(script: list[Speech]) -> Outcome:
        d = ScriptedDialogue({}, opening=[ExpectAnswer("free"), LONG_GREETING])
        tt = TurnTaking(partial_interval_s=0, backchannels={"en": frozenset({"mm hm"})})
        return run_virtual(run_scenario(Scenario(script, d, {MMHM: "Mm-hm."}, turn_taking=tt, duration_s=6)))

    quiet, o = run([]), run([Speech(1.0, 1.3, MMHM)])
    (greeting,) = o.turns()  # no caller turn, and the greeting was not cut
    assert greeting.text == LONG_GREETING and not greeting.interrupted and o.transport.clears == []
    assert not bot_audio(o, 1.2, 2.0)  # silent within 200 ms of the caller's first sound...
    assert bot_audio(o, 2.0, 2.2)  # ...and on again once "mm-hm" was heard as a backchannel
    # nothing of the greeting was lost: the same audio as when the caller says nothing, only later
    assert len(o.transport.audio_times()) == len(quiet.transport.audio_times())


def test_a_hello_then_an_emergency_over_the_greeting_meet_a_silent_bot() -> None:
    d = ScriptedDialogue({"Hello!": ["How can I help?"], "Hello! I have crushing chest pain.": [ADVICE]},
                         opening=[ExpectAnswer("free"), LONG_GREETING])
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False)
    # the browser test's timing: "Hello!" (1.0-1.5 s) over the greeting, and 0.7 s later the emergency
    sc = Scenario([Speech(1.0, 1.5, HELLO), Speech(2.2, 4.2, CHEST)], d, TEXTS, turn_taking=tt, duration_s=9)
    o = run_virtual(run_scenario(sc))
    # "Hello!" said over the bot waited for more (TurnTaking.interjection_wait_ms) and was answered with it
    assert d.utterances == ["Hello! I have crushing chest pain."]
    greeting, caller, advice = o.turns()
    assert greeting.interrupted and caller.start_s < 1.1 and advice.text == ADVICE
    assert not bot_audio(o, 1.2, 4.7)  # the bot held from "Hello!" on: nothing over the caller
    assert bot_audio(o, 4.7, 9)


def test_a_lone_hello_over_the_greeting_is_answered_after_the_interjection_wait() -> None:
    d = ScriptedDialogue({"Hello!": ["How can I help?"]}, opening=[ExpectAnswer("free"), LONG_GREETING])
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False)
    o = run_virtual(run_scenario(Scenario([Speech(1.0, 1.5, HELLO)], d, TEXTS, turn_taking=tt, duration_s=6)))
    assert d.utterances == ["Hello!"]
    greeting, hello, how = o.turns()
    assert greeting.interrupted and how.text == "How can I help?"
    first = bot_audio(o, 1.2, 6)[0]
    assert first == pytest.approx(hello.end_s + 1.2, abs=0.1)  # quiet for 1.2 s after it, then answered


def test_an_answer_ready_while_the_caller_talks_waits_and_is_cut_by_what_they_say() -> None:
    texts = {HELLO: "I feel ill.", CHEST: TEXTS[CHEST]}
    d = ScriptedDialogue({"I feel ill.": ["How can I help?"], "I have crushing chest pain.": [ADVICE]})
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False)
    # no greeting: "I feel ill." (1.0-1.5 s) is an ordinary turn; its answer is ready at ~2.2 s, its first
    # audio at ~2.7 s; the caller went on at 2.4 s
    sc = Scenario([Speech(1.0, 1.5, HELLO), Speech(2.4, 4.4, CHEST)], d, texts, turn_taking=tt, duration_s=9,
                  synthesizer=FakeSynthesizer(first_audio_s=0.5))
    o = run_virtual(run_scenario(sc))
    assert d.utterances == ["I feel ill.", "I have crushing chest pain."]
    assert not bot_audio(o, 0, 4.9)  # nothing of the bot over the caller
    how = next(t for t in o.turns() if t.text == "How can I help?")
    assert how.interrupted and how.heard_text == ""
    assert o.turns()[-1].text == ADVICE


def test_a_lone_hello_with_the_bot_silent_is_answered_with_what_follows() -> None:
    # The real-browser run that still failed with the hold alone: "Hello!" after the greeting had ended,
    # answered 0.5 s later just as the caller went on, over the emergency's first words.
    d = ScriptedDialogue({"Hello!": ["Sorry, I didn't catch the health problem."],
                          "Hello! I have crushing chest pain.": [ADVICE]})
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False)  # the final transcript's own judgement
    sc = Scenario([Speech(1.0, 1.5, HELLO), Speech(2.2, 4.2, CHEST)], d, TEXTS, turn_taking=tt, duration_s=9)
    o = run_virtual(run_scenario(sc))
    assert d.utterances == ["Hello! I have crushing chest pain."]
    assert not bot_audio(o, 0, 4.7)
