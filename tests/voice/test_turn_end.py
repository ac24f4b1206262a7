"""End of turn from the words: the rule (pure), and the real call loop acting on it (fake engines,
stream time: the endpoint wait is measured in audio fed, not on a wall clock)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.voice.test_asr_hooks import FakeSynth, FakeTransport, voiced
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import CallerUtterance, DialogueOutput, ExpectAnswer
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded, SpeechPaused
from voice.events import CallerAudio, CallerHangup, CallInfo, StateChanged, TurnRecorded
from voice.hub import Engines
from voice.ports import RecognitionHints, Transcript
from voice.result import CallResult
from voice.turn_end import verdict

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
    events = feed(ep, Pcm.concat([Pcm.silence(0.3, 16000), voiced(1.0)], 16000))
    for _ in range(0, 16000 * 2, 320):
        events += ep.feed(Pcm.silence(0.02, 16000))
        if any(isinstance(e, SpeechPaused) for e in events):
            ep.decide(decision)
            events = [e for e in events if not isinstance(e, SpeechPaused)]
        if any(isinstance(e, SpeechEnded) for e in events):
            break
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert (ended.decided_s - ended.speech_end_s) * 1000 == pytest.approx(wait_ms, abs=25)


class WordsRecognizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.hints: list[Any] = []

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False,
                         hints: RecognitionHints | None = None) -> Transcript:
        return Transcript(self.text, language, audio.duration, 0.0)


class AskOnce:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def opening(self):  # type: ignore[no-untyped-def]
        yield ExpectAnswer(self.kind)  # type: ignore[arg-type]
        yield "A question?"

    async def respond(self, utterance: CallerUtterance):  # type: ignore[no-untyped-def]
        yield "Thanks."

    async def on_silence(self, count: int):  # type: ignore[no-untyped-def]
        return
        yield

    async def on_dtmf(self, digit: str):  # type: ignore[no-untyped-def]
        return
        yield

    def heard(self, text: str, interrupted: bool) -> None:
        pass

    def result(self) -> CallResult:
        return CallResult(mode="triage")


async def endpoint_wait_ms(kind: str, words: str, speech_s: float = 2.0, *, text_turn_end: bool = True) -> float:
    transport = FakeTransport()
    engines = Engines(recognizer=WordsRecognizer(words), synthesizers={"en": FakeSynth()},
                      dialogue=lambda info: AskOnce(kind))
    listening = asyncio.Event()
    turns: asyncio.Queue[Any] = asyncio.Queue()

    async def publish(event: DialogueOutput | Any) -> None:
        if isinstance(event, StateChanged) and event.state == "listening":
            listening.set()
        if isinstance(event, TurnRecorded) and event.turn.speaker == "caller":
            await turns.put(event.turn)

    call = Call(info=CallInfo("c", "en", "websocket"), transport=transport, engines=engines, publish=publish,
                turn_taking=TurnTaking(partial_interval_s=0, text_turn_end=text_turn_end))
    running = asyncio.ensure_future(call.run())
    await asyncio.wait_for(listening.wait(), 10)
    audio = Pcm.concat([voiced(speech_s), Pcm.silence(2.0, 16000)], 16000)
    for i in range(0, len(audio), 320):  # 20 ms frames, each given a turn of the loop (the decode runs between)
        await transport.inbound.put(CallerAudio(Pcm(audio.samples[i : i + 320], 16000)))
        for _ in range(3):
            await asyncio.sleep(0)
        if not turns.empty():
            break
    turn = await asyncio.wait_for(turns.get(), 10)
    await transport.inbound.put(CallerHangup())
    await asyncio.wait_for(running, 10)
    assert turn.metrics is not None and turn.metrics.endpoint_wait_ms is not None
    return turn.metrics.endpoint_wait_ms


async def test_an_answer_that_satisfies_the_question_ends_the_turn_at_the_pause() -> None:
    with_rule = await endpoint_wait_ms("number", "Thirty eight point five, I think.")
    without = await endpoint_wait_ms("number", "Thirty eight point five, I think.", text_turn_end=False)
    assert with_rule <= 300 < without  # 2 s of speech is past the short-answer wait: 500 ms without the rule


async def test_an_unfinished_clause_holds_the_turn_open() -> None:
    assert await endpoint_wait_ms("free", "And then my") >= 1150
    assert await endpoint_wait_ms("free", "I have a sore throat.") == pytest.approx(500, abs=30)
