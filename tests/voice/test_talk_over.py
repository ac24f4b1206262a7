"""A caller who goes on talking is not talked over: a turn whose transcript arrives while the caller is
speaking again is answered together with what follows (the real Call loop; fake engines; events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tests.voice.test_asr_hooks import FakeSynth, FakeTransport, voiced
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import CallerUtterance, DialogueOutput, ExpectAnswer
from voice.events import CallerAudio, CallerHangup, CallInfo, StateChanged, TurnRecorded
from voice.hub import Engines
from voice.ports import RecognitionHints, Transcript
from voice.result import CallResult


class SlowFirstRecognizer:
    """The first final waits until the test lets it go (the caller is talking again by then)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.finals = 0

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False,
                         hints: RecognitionHints | None = None) -> Transcript:
        if partial:
            return Transcript("", language, audio.duration, 0.0)
        self.finals += 1
        if self.finals == 1:
            self.started.set()
            await self.release.wait()
            return Transcript("Hello!", language, audio.duration, 0.0)
        return Transcript("I have crushing chest pain.", language, audio.duration, 0.0)


class Recording:
    def __init__(self) -> None:
        self.utterances: asyncio.Queue[CallerUtterance] = asyncio.Queue()

    async def opening(self) -> AsyncIterator[DialogueOutput]:
        yield ExpectAnswer("free")
        yield "Hello, this is CareCall."

    async def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        await self.utterances.put(utterance)
        yield "Call an ambulance now."

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


async def feed(transport: FakeTransport, audio: Pcm) -> None:
    for i in range(0, len(audio), 320):
        await transport.inbound.put(CallerAudio(Pcm(audio.samples[i : i + 320], 16000)))
        await asyncio.sleep(0)


async def test_a_lone_hello_followed_by_more_speech_is_answered_with_it() -> None:
    transport, recognizer, dialogue = FakeTransport(), SlowFirstRecognizer(), Recording()
    engines = Engines(recognizer=recognizer, synthesizers={"en": FakeSynth()}, dialogue=lambda info: dialogue)
    listening = asyncio.Event()
    bot_turns: list[str] = []

    async def publish(event: Any) -> None:
        if isinstance(event, StateChanged) and event.state == "listening":
            listening.set()
        if isinstance(event, TurnRecorded) and event.turn.speaker == "bot":
            bot_turns.append(event.turn.text)

    call = Call(info=CallInfo("c", "en", "websocket"), transport=transport, engines=engines, publish=publish,
                turn_taking=TurnTaking(partial_interval_s=0, speculative_decoding=False))
    running = asyncio.ensure_future(call.run())
    await asyncio.wait_for(listening.wait(), 10)
    await feed(transport, Pcm.concat([voiced(0.5), Pcm.silence(0.8, 16000)], 16000))  # "Hello!" ends a turn
    await asyncio.wait_for(recognizer.started.wait(), 10)
    await feed(transport, voiced(0.5))  # ...and the caller goes on before it is transcribed
    assert call.endpointer.in_speech
    recognizer.release.set()
    await feed(transport, Pcm.concat([voiced(1.5), Pcm.silence(1.0, 16000)], 16000))
    utterance = await asyncio.wait_for(dialogue.utterances.get(), 10)
    await transport.inbound.put(CallerHangup())
    await asyncio.wait_for(running, 10)
    assert utterance.text == "Hello! I have crushing chest pain."
    assert dialogue.utterances.empty()  # answered once, not "Hello!" first
    assert bot_turns == ["Hello, this is CareCall.", "Call an ambulance now."]
    assert [t.text for t in call.turns if t.speaker == "caller"] == ["Hello! I have crushing chest pain."]
