"""A nurse takes over a call on the real call loop (voice.call.Call), on fake engines and virtual
time (tests/voice/fakes.py): exact and deterministic.

The standard timeline: the caller says "I have a cough" (0.5-2.5 s); the bot asks a yes/no question
from 3.35 s; the nurse takes over at 4.0 s, mid-question; the bot says its handover sentence; the
nurse speaks 6.0-7.5 s, the caller 8.5-9.5 s; 10 s of quiet follow (no re-prompt while a nurse has
the call); she hands back at 19.5 s and the caller answers the pending question at 21.5 s."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.voice.fakes import (
    FRAME,
    RATE,
    FakeRecognizer,
    FakeSynthesizer,
    FakeTransport,
    ScriptedDialogue,
    Speech,
    _caller,
    now,
    pitch_of,
    vowel,
)
from tests.voice.virtual_time import run_virtual
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import CallerUtterance, DialogueOutput, ExpectAnswer, Say
from voice.events import CallEvent, CallInfo, Turn, TurnRecorded
from voice.hub import Engines
from voice.result import CallResult
from voice.takeover import Phrases, Takeable, TakeoverError, TakeoverRegistry

COUGH, YES, NURSE, THANKS = 150.0, 200.0, 300.0, 250.0
TEXTS = {COUGH: "I have a cough.", YES: "Yes.", NURSE: "This is nurse Nina.", THANKS: "Thank you, nurse."}
QUESTION = "Is it worse at night?"
PHRASES = Phrases(handover={"en": "A nurse is joining you now."}, hand_back={"en": "I am back with you."},
                  goodbye={"en": "The nurse has ended the call. Goodbye."})  # fmt: skip
CALL_ID = "takeover1"
# deterministic turn-taking: the endpoint is the silence wait alone (no decode at a pause)
TT = TurnTaking(partial_interval_s=0.0, speculative_decoding=False, text_turn_end=False)


class IndexedDialogue(ScriptedDialogue):
    """Also keeps the turn index each utterance came with (the record's numbering)."""

    def __init__(self) -> None:
        question: list[DialogueOutput] = [QUESTION, ExpectAnswer("yes_no")]
        super().__init__({TEXTS[COUGH]: question, TEXTS[YES]: ["Thank you."]})
        self.indexes: list[int] = []

    def respond(self, utterance: CallerUtterance) -> Any:
        self.indexes.append(utterance.turn_index)
        return super().respond(utterance)


class LevelTransport(FakeTransport):
    """Also keeps each frame's level: a resampler's rounding leaves ±1 in silence."""

    def __init__(self, *, rate: int) -> None:
        super().__init__(rate=rate)
        self.levels: list[tuple[float, float]] = []  # (time sent, dBFS)

    async def _heard(self, frame: Pcm, bot: bool) -> None:
        self.levels.append((now(), frame.rms_dbfs()))
        await super()._heard(frame, bot)


class FakeNursePeer:
    """The nurse's browser: her microphone in 20 ms frames in real time (a vowel inside each Speech,
    silence elsewhere), until `leaves_at_s`; and the caller audio she was sent, time-stamped."""

    def __init__(self, t0: float, speech: list[Speech], leaves_at_s: float | None = None) -> None:
        self.t0 = t0
        self.speech = speech
        self.leaves_at_s = leaves_at_s
        self.heard: list[tuple[float, float]] = []  # (call time, pitch of what she heard)
        self.closed = False
        self._n: int | None = None

    async def receive(self) -> Pcm | None:
        if self._n is None:
            self._n = math.ceil(round((now() - self.t0) / 0.02, 6))
        n, self._n = self._n, self._n + 1
        await asyncio.sleep(max(0.0, self.t0 + (n + 1) * 0.02 - now()))  # the frame's end: it is whole
        at = n * 0.02
        if self.leaves_at_s is not None and at >= self.leaves_at_s:
            return None
        s = next((s for s in self.speech if s.start_s <= at < s.end_s), None)
        return Pcm(vowel(s.f0, n * FRAME, FRAME) if s else np.zeros(FRAME, np.int16), RATE)

    def send(self, audio: Pcm) -> None:
        if np.abs(audio.samples).max() > 0:
            self.heard.append((round(now() - self.t0, 3), pitch_of(audio.samples)))

    async def close(self) -> None:
        self.closed = True


@dataclass
class Run:
    call: Call
    transport: LevelTransport
    synthesizer: FakeSynthesizer
    dialogue: IndexedDialogue
    registry: TakeoverRegistry
    t0: float
    events: list[CallEvent] = field(default_factory=list)
    result: CallResult = field(default_factory=lambda: CallResult(mode="triage", call_id=""))

    def turns(self) -> list[Turn]:
        return [e.turn for e in self.events if isinstance(e, TurnRecorded)]

    def sound_sent(self, a: float, b: float) -> list[float]:
        """When the caller's line sent frames of sound, between a and b seconds into the call."""
        return [t - self.t0 for t, db in self.transport.levels if db > -60 and a <= t - self.t0 < b]

    def loud_between(self, a: float, b: float) -> int:
        return len(self.sound_sent(a, b))

    async def at(self, s: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + s - now()))


Nurse = Callable[[Run], Awaitable[None]]


def run_call(caller: list[Speech], nurse: Nurse, duration_s: float, *, line_rate: int = RATE) -> Run:
    """The call with a scripted caller, and `nurse` acting on it from the console's side; the line
    plays at `line_rate` (8 kHz: a phone line, SIP/RTP or Media Streams)."""

    async def main() -> Run:
        transport, synthesizer, dialogue = LevelTransport(rate=line_rate), FakeSynthesizer(), IndexedDialogue()
        recognizer = FakeRecognizer(TEXTS)
        engines = Engines(recognizer=recognizer, synthesizers={"en": synthesizer}, dialogue=lambda info: dialogue)
        events: list[CallEvent] = []

        async def publish(event: CallEvent) -> None:
            events.append(event)

        info = CallInfo(call_id=CALL_ID, language="en", channel="websocket")
        call = Call(info=info, transport=transport, engines=engines, publish=publish, turn_taking=TT)
        live: dict[str, object] = {CALL_ID: call}
        run = Run(call, transport, synthesizer, dialogue, TakeoverRegistry(PHRASES, recognizer, live), now(), events)
        feeding = asyncio.create_task(_caller(transport, caller, duration_s, run.t0))
        acting = asyncio.create_task(nurse(run))
        try:
            run.result = await call.run()
            await acting  # its failures are the test's
        finally:
            live.pop(CALL_ID)
            feeding.cancel()
            acting.cancel()
            await transport.output.close()
        return run

    return run_virtual(main())


CALLER = [Speech(0.5, 2.5, COUGH), Speech(8.5, 9.5, THANKS), Speech(21.5, 22.0, YES)]


@pytest.mark.parametrize("line_rate", [RATE, 8000])
def test_a_nurse_takes_over_talks_with_the_caller_and_hands_back(line_rate: int) -> None:
    peers: list[FakeNursePeer] = []

    async def nurse(run: Run) -> None:
        await run.at(4.0)  # mid-question
        peer = FakeNursePeer(run.t0, [Speech(6.0, 7.5, NURSE)])
        peers.append(peer)
        await run.registry.take(CALL_ID, peer, "nina")
        assert run.call.nurse == "nina"
        with pytest.raises(TakeoverError, match="already taken over by nina"):
            await run.registry.take(CALL_ID, FakeNursePeer(run.t0, []), "ada")
        await run.at(19.5)
        await run.registry.hand_back(CALL_ID, "nina")
        assert run.call.nurse is None
        with pytest.raises(TakeoverError, match="not taken over"):
            await run.registry.hand_back(CALL_ID, "nina")

    run = run_call(CALLER, nurse, duration_s=26, line_rate=line_rate)
    (peer,) = peers
    turns = run.turns()
    assert [(t.index, t.speaker) for t in turns] == [
        (0, "caller"), (1, "bot"), (2, "bot"), (3, "nurse"), (4, "caller"), (5, "bot"), (6, "caller"), (7, "bot"),
    ]  # fmt: skip
    _cough, question, handover, said, thanks, back, yes, reply = turns
    # the takeover stops the reply at once: the caller heard part of the question, then the handover
    assert question.text == QUESTION and question.interrupted and question.end_s == pytest.approx(4.0, abs=0.03)
    assert run.transport.clears and run.transport.clears[0] - run.t0 == pytest.approx(4.0, abs=0.001)
    assert handover.text == PHRASES.handover["en"] and not handover.interrupted
    handover_end = handover.start_s + len(handover.text) * 0.05
    # her words: to the caller's line (through the call's paced output) and into the record
    assert said.text == TEXTS[NURSE] and said.start_s == pytest.approx(6.0, abs=0.05)
    assert said.end_s == pytest.approx(7.6, abs=0.05)  # (the endpointer hears ~0.1 s of tail, as for the caller)
    assert run.loud_between(6.0, 7.6) >= 70  # 1.5 s of her voice = 75 frames
    voice = run.sound_sent(6.1, 7.4)  # and it flows: a frame every 20 ms, no gap (a resampler's blocks)
    assert max(b - a for a, b in itertools.pairwise(voice)) <= 0.021
    assert run.loud_between(handover_end + 0.1, 5.95) == 0 and run.loud_between(7.6, 19.5) == 0
    # the caller's words: to the nurse, and into the record, but not to the dialogue
    assert thanks.text == TEXTS[THANKS] and thanks.start_s == pytest.approx(8.5, abs=0.05)
    caller_heard = [t for t, pitch in peer.heard if abs(pitch - THANKS) < 8]
    assert len(caller_heard) >= 45 and 8.5 <= caller_heard[0] < 8.6 and caller_heard[-1] < 9.6
    assert not [t for t, _ in peer.heard if t < 4.0]  # she hears the caller only once she has the call
    # the bot stayed quiet: no answer, no re-prompt through 10 s of silence, nothing but the handover said
    assert run.dialogue.utterances == [TEXTS[COUGH], TEXTS[YES]] and run.dialogue.silences == []
    assert run.synthesizer.said[:3] == [QUESTION, PHRASES.handover["en"], PHRASES.hand_back["en"]]
    # hand-back: her side is closed, the bot speaks, and the pending yes/no question is still pending:
    # the answer ends on the short-answer silence (300 ms, not 500) and the dialogue gets the record's index
    assert peer.closed and back.text == PHRASES.hand_back["en"] and back.start_s == pytest.approx(19.55, abs=0.03)
    assert yes.text == "Yes." and yes.metrics is not None and yes.metrics.endpoint_wait_ms == 300.0
    assert run.dialogue.indexes == [0, 6] and reply.text == "Thank you."
    # who took over and when, in the call's result (the record's history)
    assert [(h.event, h.by, h.why) for h in run.result.takeovers] == [("takeover", "nina", None),
                                                                       ("handback", "nina", None)]
    assert [h.at_s for h in run.result.takeovers] == [pytest.approx(4.0, abs=0.001), pytest.approx(19.5, abs=0.001)]
    assert run.result.call_id == "fake"  # the dialogue's own result is kept
    assert run.result.to_json()["takeovers"][1] == {"event": "handback", "by": "nina", "at_s": 19.5}


def test_the_nurse_ends_the_call() -> None:
    async def nurse(run: Run) -> None:
        await run.at(4.0)
        await run.registry.take(CALL_ID, FakeNursePeer(run.t0, [Speech(6.0, 7.5, NURSE)]), "nina")
        await run.at(10.0)
        await run.registry.end(CALL_ID, "nina")

    run = run_call(CALLER, nurse, duration_s=26)
    assert run.call._end_reason == "taken_over"
    assert [t.speaker for t in run.turns()] == ["caller", "bot", "bot", "nurse", "caller", "bot"]
    goodbye = run.turns()[-1]
    assert goodbye.text == PHRASES.goodbye["en"] and not goodbye.interrupted
    assert run.loud_between(10.0, 10.05 + len(goodbye.text) * 0.05) > 0  # the goodbye is heard before the end
    assert [(h.event, h.by) for h in run.result.takeovers] == [("takeover", "nina"), ("end", "nina")]


def test_when_the_nurse_drops_out_the_bot_takes_the_call_back() -> None:
    async def nurse(run: Run) -> None:
        await run.at(4.0)
        await run.registry.take(CALL_ID, FakeNursePeer(run.t0, [Speech(6.0, 7.5, NURSE)], leaves_at_s=12.0), "nina")

    run = run_call([*CALLER[:2], Speech(14.5, 15.0, YES)], nurse, duration_s=20)
    speakers = [t.speaker for t in run.turns()]
    assert speakers == ["caller", "bot", "bot", "nurse", "caller", "bot", "caller", "bot"]
    back, yes, reply = run.turns()[5:]
    assert back.text == PHRASES.hand_back["en"] and back.start_s == pytest.approx(12.05, abs=0.05)
    assert yes.metrics is not None and yes.metrics.endpoint_wait_ms == 300.0 and reply.text == "Thank you."
    (_, handback) = run.result.takeovers
    assert (handback.event, handback.by, handback.why) == ("handback", "nina", "the nurse's connection ended")
    assert handback.at_s == pytest.approx(12.02, abs=0.03)


def test_safety_advice_being_spoken_is_finished_before_the_handover() -> None:
    advice = "Call 120 now. Do not drive yourself."

    async def nurse(run: Run) -> None:
        run.dialogue.answers[TEXTS[COUGH]] = [Say(advice, protected=True), "Is anyone with you?"]
        await run.at(3.6)  # 0.45 s into the advice
        await run.registry.take(CALL_ID, FakeNursePeer(run.t0, []), "nina")

    run = run_call([Speech(0.5, 2.5, COUGH)], nurse, duration_s=12)
    _cough, bot, handover = run.turns()[:3]
    assert bot.protected and bot.interrupted and bot.heard_text == advice  # heard in full, the rest cut
    assert handover.text == PHRASES.handover["en"]
    assert handover.start_s == pytest.approx(bot.start_s + len(advice) * 0.05, abs=0.06)


def test_only_a_live_call_of_this_worker_can_be_taken_over() -> None:
    registry = TakeoverRegistry(PHRASES, FakeRecognizer(TEXTS), {"other": object()})
    with pytest.raises(TakeoverError, match="no such live call"):
        registry.call("missing")
    with pytest.raises(TakeoverError, match="no such live call"):
        registry.call("other")

    async def not_started() -> None:
        transport = FakeTransport()
        engines = Engines(recognizer=FakeRecognizer(TEXTS), synthesizers={"en": FakeSynthesizer()},
                          dialogue=lambda info: IndexedDialogue())  # fmt: skip
        call = Call(info=CallInfo(call_id="c", language="en", channel="websocket"), transport=transport,
                    engines=engines, publish=lambda e: asyncio.sleep(0))  # fmt: skip
        assert isinstance(call, Takeable)
        with pytest.raises(TakeoverError, match="not live"):
            await TakeoverRegistry(PHRASES, FakeRecognizer(TEXTS), {"c": call}).take("c", FakeNursePeer(now(), []), "n")
        await transport.output.close()

    run_virtual(not_started())
