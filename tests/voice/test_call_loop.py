"""The call loop on fake engines and virtual time (tests/voice/fakes.py): scripted timelines, exact
and deterministic, in milliseconds of wall time whatever the machine's load.

The standard timeline: the caller speaks 0.5-2.5 s, ASR takes 0.2 s (started speculatively at the
pause), the reply takes ~2.5 s, the caller barges in at 3.6 s."""

from __future__ import annotations

import pytest

from tests.voice.fakes import HangUp, Key, Scenario, ScriptedDialogue, Speech, run_scenario
from tests.voice.virtual_time import run_virtual
from voice.call import TurnTaking
from voice.conversation import EndCall, Say
from voice.events import CallEnded, StateChanged, TurnRecorded

COUGH, MONDAY, MMHM = 150.0, 200.0, 250.0
TEXTS = {COUGH: "I have a cough.", MONDAY: "Since Monday.", MMHM: "Mm-hm."}
QUESTION = "That sounds unpleasant. How long has it been going on?"


def dialogue(**kwargs: object) -> ScriptedDialogue:
    return ScriptedDialogue({TEXTS[COUGH]: [QUESTION], TEXTS[MONDAY]: ["Thank you."]}, **kwargs)  # type: ignore[arg-type]


def test_a_turn_is_answered_within_the_endpoint_wait_plus_first_audio() -> None:
    sc = Scenario([Speech(0.5, 2.5, COUGH)], dialogue(), TEXTS, duration_s=8)
    o = run_virtual(run_scenario(sc))
    caller, bot = o.turns()
    assert (caller.speaker, caller.text) == ("caller", "I have a cough.")
    assert caller.start_s == pytest.approx(0.48, abs=0.02) and caller.end_s == pytest.approx(2.6, abs=0.02)
    assert caller.metrics is not None and caller.metrics.endpoint_wait_ms == 500.0
    assert caller.metrics.asr_ms == 0.0  # the speculative decode at the pause was ready at the endpoint
    assert o.recognizer.finals == 1
    assert bot.text == QUESTION and not bot.interrupted and bot.heard_text is None
    assert bot.metrics is not None and bot.metrics.voice_to_voice_ms == 550.0  # 500 wait + 50 first audio
    first_audio = o.transport.audio_times()[0]
    assert o.rel(first_audio) == pytest.approx(3.15, abs=0.001)
    assert sc.dialogue.heard_calls == [(QUESTION, False)]
    assert o.end_reason == "caller hung up"


def test_barge_in_silences_the_bot_and_the_record_keeps_what_was_heard() -> None:
    sc = Scenario([Speech(0.5, 2.5, COUGH), Speech(3.6, 4.8, MONDAY)], dialogue(), TEXTS, duration_s=8)
    o = run_virtual(run_scenario(sc))
    _caller1, bot1, caller2, bot2 = o.turns()
    # The bot is held as soon as the caller's speech is detected (120 ms of it, TurnTaking.barge_in_hold),
    # and cut once it is a barge-in (600 ms of speech over the bot): the caller heard up to the hold.
    assert bot1.interrupted and bot1.heard_text == "That sounds"
    assert QUESTION.startswith(bot1.heard_text)
    last_audio = max(t for t in o.transport.audio_times() if t < o.t0 + 5.4)
    assert o.rel(last_audio) == pytest.approx(3.7, abs=0.02)
    (cleared,) = o.transport.clears
    assert o.rel(cleared) == pytest.approx(4.18, abs=0.02)
    assert bot1.end_s == pytest.approx(o.rel(last_audio) + 0.06, abs=0.03)  # (sent a 60 ms lead ahead)
    assert caller2.text == "Since Monday." and bot2.text == "Thank you." and not bot2.interrupted
    assert sc.dialogue.heard_calls[0] == ("That sounds", True)


def test_without_the_hold_the_bot_talks_on_until_the_barge_in() -> None:
    tt = TurnTaking(partial_interval_s=0.0, barge_in_hold=False)
    sc = Scenario([Speech(0.5, 2.5, COUGH), Speech(3.6, 4.8, MONDAY)], dialogue(), TEXTS, turn_taking=tt,
                  duration_s=8)
    o = run_virtual(run_scenario(sc))
    _caller1, bot1, caller2, bot2 = o.turns()
    assert bot1.interrupted and bot1.heard_text == "That sounds unpleasa"
    (cleared,) = o.transport.clears
    # 600 ms of speech over the bot interrupts it: at 3.6 s + ~0.6 s
    assert o.rel(cleared) == pytest.approx(4.18, abs=0.02)
    assert bot1.end_s == pytest.approx(o.rel(cleared), abs=0.03)
    assert not [t for t in o.transport.audio_times() if cleared < t < o.t0 + 5.4]  # silent at once
    assert caller2.text == "Since Monday." and bot2.text == "Thank you." and not bot2.interrupted


def test_a_backchannel_over_the_bot_does_not_interrupt_it() -> None:
    tt = TurnTaking(partial_interval_s=0.0, backchannels={"en": frozenset({"mm hm"})})
    sc = Scenario([Speech(0.5, 2.5, COUGH), Speech(3.6, 3.9, MMHM)], dialogue(), TEXTS, turn_taking=tt, duration_s=8)
    o = run_virtual(run_scenario(sc))
    _caller, bot = o.turns()  # no caller turn for the "mm-hm"
    assert not bot.interrupted and o.transport.clears == []
    assert o.recognizer.finals == 2  # it was transcribed, then judged an acknowledgement


def test_protected_advice_is_finished_before_the_caller_takes_the_turn() -> None:
    advice = Say("Call 120 now. Do not drive yourself.", protected=True)
    d = ScriptedDialogue({TEXTS[COUGH]: [advice, "Is anyone with you?"], TEXTS[MONDAY]: ["Thank you."]})
    sc = Scenario([Speech(0.5, 2.5, COUGH), Speech(3.6, 4.8, MONDAY)], d, TEXTS, duration_s=9)
    o = run_virtual(run_scenario(sc))
    _caller1, bot1, caller2, bot2 = o.turns()
    assert bot1.protected and bot1.interrupted
    # the whole instruction was heard, then the rest was cut for the caller's turn
    assert bot1.heard_text == "Call 120 now. Do not drive yourself."
    advice_s = len(advice) * 0.05
    (cleared,) = o.transport.clears
    assert o.rel(cleared) == pytest.approx(3.15 + advice_s, abs=0.05)
    assert caller2.text == "Since Monday."
    assert d.heard_calls[0] == ("Call 120 now. Do not drive yourself.", True)
    assert not bot2.protected


def test_protected_advice_cut_by_a_key_press_is_repeated_first_thing() -> None:
    advice = Say("Call 120 now.", protected=True)
    d = ScriptedDialogue({TEXTS[COUGH]: [advice, "Is anyone with you?"]}, on_dtmf={"1": ["You pressed one."]})
    sc = Scenario([Speech(0.5, 2.5, COUGH), Key(3.3, "1")], d, TEXTS, duration_s=8)
    o = run_virtual(run_scenario(sc))
    _caller, bot1, bot2 = o.turns()
    assert bot1.protected and bot1.interrupted and bot1.heard_text != "Call 120 now."
    assert bot2.text.startswith("Call 120 now.") and bot2.protected and not bot2.interrupted
    assert sc.synthesizer.said[-2:] == ["Call 120 now.", "You pressed one."]


def test_a_pause_mid_sentence_drops_the_stale_speculative_decode() -> None:
    # 0.5-1.5 s, a 450 ms pause (a speculative decode starts), then on to 2.5 s: still one utterance
    sc = Scenario([Speech(0.5, 1.5, COUGH), Speech(1.95, 2.5, COUGH)], dialogue(), TEXTS, duration_s=8)
    o = run_virtual(run_scenario(sc))
    caller, _bot = o.turns()
    assert caller.start_s == pytest.approx(0.48, abs=0.02) and caller.end_s == pytest.approx(2.6, abs=0.02)
    assert o.recognizer.started == 2  # at the first pause (cancelled when the caller went on) and the last
    assert o.recognizer.finals == 1 and caller.metrics is not None and caller.metrics.asr_ms == 0.0


def test_silence_reprompts_then_the_dialogue_ends_the_call() -> None:
    d = dialogue(on_silence=lambda n: ["Are you there?"] if n < 2 else ["Goodbye.", EndCall("no answer")])
    sc = Scenario([], d, TEXTS, duration_s=60)
    o = run_virtual(run_scenario(sc))
    assert d.silences == [1, 2]
    reprompts = [t for t, e in o.events if isinstance(e, TurnRecorded)]
    # 8 s of silence (on a 250 ms tick), then the re-prompt plays; 8 s after it ends, the second
    assert [o.rel(t) for t in reprompts] == [8.75, 17.2]
    assert o.end_reason == "no answer"


def test_a_caller_hanging_up_mid_reply_ends_the_call_and_records_what_was_heard() -> None:
    sc = Scenario([Speech(0.5, 2.5, COUGH), HangUp(3.8)], dialogue(), TEXTS, duration_s=8)
    o = run_virtual(run_scenario(sc))
    _caller, bot = o.turns()
    assert o.end_reason == "caller hung up"
    assert bot.interrupted and 0 < len(bot.heard_text or "") < len(QUESTION)
    ended = [e for _, e in o.events if isinstance(e, CallEnded)]
    assert len(ended) == 1 and o.transport.hung_up is None  # the caller hung up: nothing to hang up


def test_max_call_length_and_max_silence_hold_when_a_reply_never_finishes() -> None:
    from tests.voice.fakes import FakeSynthesizer

    stuck = FakeSynthesizer(hang=True)
    tt = TurnTaking(partial_interval_s=0.0, max_silence_s=30.0, max_call_s=120.0, max_reply_s=1000.0)
    sc = Scenario([Speech(0.5, 2.5, COUGH)], dialogue(), TEXTS, synthesizer=stuck, turn_taking=tt, duration_s=200)
    o = run_virtual(run_scenario(sc))
    assert o.end_reason == "no response from the caller"
    assert o.rel(o.events[-1][0]) == pytest.approx(3.1 + 30.0, abs=0.26)  # 30 s after the caller's last word
    # a caller who keeps talking over a stuck bot: the call still ends at its maximum length
    talk = [Speech(0.5 + 10 * i, 2.5 + 10 * i, COUGH) for i in range(20)]
    sc = Scenario(talk, dialogue(), TEXTS, synthesizer=FakeSynthesizer(hang=True), turn_taking=tt, duration_s=200)
    o = run_virtual(run_scenario(sc))
    assert o.end_reason == "maximum call length reached"
    assert o.rel(o.events[-1][0]) == pytest.approx(120.0, abs=0.5)


def test_a_reply_past_its_limit_is_cut_and_the_call_goes_on() -> None:
    from tests.voice.fakes import FakeSynthesizer

    tt = TurnTaking(partial_interval_s=0.0, max_reply_s=5.0)
    sc = Scenario([Speech(0.5, 2.5, COUGH)], dialogue(), TEXTS, synthesizer=FakeSynthesizer(hang=True),
                  turn_taking=tt, duration_s=12)
    o = run_virtual(run_scenario(sc))
    _caller, bot = o.turns()
    assert bot.interrupted and o.end_reason == "caller hung up"
    states = [e.state for _, e in o.events if isinstance(e, StateChanged)]
    assert states[-2:] == ["listening", "ended"]


def test_a_finished_turn_reaches_the_caller_only_after_the_observers_stored_it() -> None:
    sc = Scenario([Speech(0.5, 2.5, COUGH)], dialogue(), TEXTS, duration_s=8, observer_delay_s=0.3)
    o = run_virtual(run_scenario(sc))
    stored = {id(e): t for t, e in o.events}
    told = [(t, e) for t, e in o.transport.events if isinstance(e, TurnRecorded)]
    assert len(told) == 2
    for t, e in told:
        assert t >= stored[id(e)]  # the client hears of a turn only once the record has it
    # and the reply was not held up by the slow observer
    assert o.rel(o.transport.audio_times()[0]) == pytest.approx(3.15, abs=0.001)


def test_an_escalated_call_outlives_the_maximum_call_length_until_the_caller_hangs_up() -> None:
    from voice.conversation import Escalate

    tt = TurnTaking(partial_interval_s=0.0, max_silence_s=30.0, max_call_s=60.0)
    d = ScriptedDialogue({TEXTS[COUGH]: [Escalate("chest pain", ("cardiac_chest_pain",)),
                                         Say("Call 120 now.", protected=True)]},
                         on_silence=lambda n: [])  # the dialogue holds the line for a nurse
    sc = Scenario([Speech(0.5, 2.5, COUGH), HangUp(150.0)], d, TEXTS, turn_taking=tt, duration_s=200)
    o = run_virtual(run_scenario(sc))
    # neither the silence limit (30 s) nor the call's maximum length (60 s) ends a caller who may have collapsed
    assert o.end_reason == "caller hung up"
    assert o.rel(o.events[-1][0]) == pytest.approx(150.0, abs=0.5)
