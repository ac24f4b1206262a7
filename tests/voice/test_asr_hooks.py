"""The call loop hands the recogniser what the pending question expects (ExpectAnswer → hints) and hands
the dialogue what the recogniser was unsure of (CallerUtterance.uncertain_words). Our own fakes of the
engines, the real Call, endpointer and webrtcvad; events, no wall-clock windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import CallerUtterance, DialogueOutput, EndCall, ExpectAnswer
from voice.events import CallerAudio, CallerHangup, CallInfo, InboundEvent, StateChanged
from voice.hub import Engines
from voice.ports import RecognitionHints, Transcript, WordInfo
from voice.result import CallResult


def voiced(seconds: float, rate: int = 16000) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560, 700), 1))
    return Pcm.from_float(0.3 * wave / np.abs(wave).max(), rate)


class FakeTransport:
    input_rate = 16000
    output_rate = 16000

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self._played = 0.0

    async def receive(self) -> InboundEvent:
        return await self.inbound.get()

    async def send_audio(self, audio: Pcm) -> None:
        self._played += audio.duration  # "played" at once: this transport has no clock

    async def clear(self) -> float:
        return self._played

    def played_s(self) -> float:
        return self._played

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        return True  # everything "played" as it was sent

    def mark_turn(self) -> None:
        self._played = 0.0

    async def send_event(self, event: Any) -> None:
        pass

    async def hangup(self, reason: str) -> None:
        pass


class FakeRecognizer:
    def __init__(self) -> None:
        self.hints: list[RecognitionHints | None] = []

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False,
                         hints: RecognitionHints | None = None) -> Transcript:
        if not partial:
            self.hints.append(hints)
        words = (WordInfo("I", 0.0, 0.2, 0.97), WordInfo("have", 0.2, 0.4, 0.93), WordInfo("fever", 0.4, 0.8, 0.22))
        return Transcript("I have fever", language, audio.duration, 0.01, words)


class FakeSynth:
    language = "en"
    sample_rate = 16000

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        yield Pcm.silence(0.05, 16000)


class FakeDialogue:
    def __init__(self) -> None:
        self.utterances: asyncio.Queue[CallerUtterance] = asyncio.Queue()

    async def opening(self) -> AsyncIterator[DialogueOutput]:
        yield ExpectAnswer("number", ("degrees",))
        yield "What was your temperature?"

    async def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        await self.utterances.put(utterance)
        yield "Thank you."
        yield EndCall()

    async def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        return
        yield

    async def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]:
        return
        yield

    def heard(self, text: str, interrupted: bool) -> None:
        pass

    def result(self) -> CallResult:
        return CallResult(mode="triage")


async def test_hints_reach_the_recogniser_and_unsure_words_reach_the_dialogue() -> None:
    transport, recognizer, dialogue = FakeTransport(), FakeRecognizer(), FakeDialogue()
    engines = Engines(recognizer=recognizer, synthesizers={"en": FakeSynth()}, dialogue=lambda info: dialogue)
    listening = asyncio.Event()

    async def publish(event: Any) -> None:
        if isinstance(event, StateChanged) and event.state == "listening":
            listening.set()  # the opening question has been spoken

    call = Call(info=CallInfo("c1", "en", "websocket"), transport=transport, engines=engines, publish=publish,
                turn_taking=TurnTaking(partial_interval_s=0, speculative_decoding=False, uncertain_below=0.5))
    running = asyncio.ensure_future(call.run())
    await asyncio.wait_for(listening.wait(), 10)
    for chunk in (voiced(1.0), Pcm.silence(1.0, 16000)):
        await transport.inbound.put(CallerAudio(chunk))
    utterance = await asyncio.wait_for(dialogue.utterances.get(), 10)
    await transport.inbound.put(CallerHangup())
    await asyncio.wait_for(running, 10)
    assert recognizer.hints == [RecognitionHints("number", ("degrees",))]
    assert utterance.text == "I have fever"
    assert utterance.uncertain_words == ("fever",)
