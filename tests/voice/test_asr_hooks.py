"""The call loop hands the recogniser what the pending question expects (ExpectAnswer → hints) and hands
the dialogue what the recogniser was unsure of (CallerUtterance.uncertain_words). The real Call,
endpointer and webrtcvad on the shared fakes and virtual time (tests/voice/fakes.py)."""

from __future__ import annotations

from tests.voice.fakes import Scenario, ScriptedDialogue, Speech, run_scenario
from tests.voice.virtual_time import run_virtual
from voice.call import TurnTaking
from voice.conversation import EndCall, ExpectAnswer
from voice.ports import RecognitionHints, WordInfo

FEVER = 180.0
TEXTS = {FEVER: "I have fever"}
WORDS = {"I have fever": (WordInfo("I", 0.0, 0.2, 0.97), WordInfo("have", 0.2, 0.4, 0.93),
                          WordInfo("fever", 0.4, 0.8, 0.22))}
QUESTION = "What was your temperature?"


def test_hints_reach_the_recogniser_and_unsure_words_reach_the_dialogue() -> None:
    d = ScriptedDialogue({TEXTS[FEVER]: ["Thank you.", EndCall("done")]},
                         opening=[ExpectAnswer("number", ("degrees",)), QUESTION])
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False, uncertain_below=0.5)
    # the question plays 0.05-1.4 s; the caller answers after it
    sc = Scenario([Speech(2.0, 3.0, FEVER)], d, TEXTS, turn_taking=tt, words=WORDS, duration_s=10)
    o = run_virtual(run_scenario(sc))
    question, answer, thanks = o.turns()
    assert question.text == QUESTION and question.end_s <= answer.start_s
    assert o.recognizer.hints == [RecognitionHints("number", ("degrees",))]
    (utterance,) = d.received
    assert utterance.text == "I have fever" == answer.text
    assert utterance.uncertain_words == ("fever",)
    assert thanks.text == "Thank you." and o.end_reason == "done"
