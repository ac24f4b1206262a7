"""A caller who goes on talking is not talked over: a turn whose transcript arrives while the caller is
speaking again is answered together with what follows (the real Call loop on the shared fakes and
virtual time, tests/voice/fakes.py)."""

from __future__ import annotations

from tests.voice.fakes import Scenario, ScriptedDialogue, Speech, run_scenario
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
