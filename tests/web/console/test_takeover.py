"""Live takeover through the real call loop (voice.call.Call) and the real triage dialogue, with fakes
only of our own engines where models would make it slow (a recogniser that knows which clip it hears,
a synthesiser that renders each sentence as a tone of its length) and a transport that keeps what it
was sent. Caller and nurse speech is real speech from the project's Piper voice, so the endpointer
hears real utterances. The bot says one handover sentence and falls silent, caller and nurse hear each
other, the nurse's turns join the transcript, and hand-back gives the call back to the dialogue."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator

import numpy as np
import pytest

from dialogue.factory import build_dialogue_factory
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.events import CallerAudio, CallerHangup, CallEvent, CallInfo, InboundEvent, TurnRecorded
from voice.hub import Engines
from voice.ports import Transcript
from voice.takeover import TakeoverError, TakeoverRegistry
from web.console.takeover import load_phrases

pytestmark = pytest.mark.models

# clearly different lengths: the fake recogniser tells the clips apart by duration
YES = "Yes."
CALLER_1 = "I have had a sore throat for two days now and it is getting worse every single day."
NURSE_1 = "Hello, this is nurse Nina from the ward."
CALLER_3 = "Thank you very much."


class ClipRecognizer:
    """Knows the clips it will hear: answers with the text of the clip whose voiced length (first to
    last frame of sound; the endpointer adds pre-roll and a silent tail, Piper its own silences)
    is closest to what it is given."""

    def __init__(self, clips: dict[str, Pcm]) -> None:
        self.clips = {text: voiced_s(audio) for text, audio in clips.items()}

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False, hints: object = None) -> Transcript:
        heard = max(voiced_s(audio), 0.05)
        text = min(self.clips, key=lambda t: abs(math.log(self.clips[t] / heard)))
        return Transcript(text, language, audio.duration, 0.0)


def voiced_s(audio: Pcm, frame_s: float = 0.02, floor_dbfs: float = -45.0) -> float:
    step = max(1, int(audio.sample_rate * frame_s))
    frames = [Pcm(audio.samples[i : i + step], audio.sample_rate) for i in range(0, len(audio), step)]
    loud = [i for i, frame in enumerate(frames) if frame.rms_dbfs() > floor_dbfs]
    return (loud[-1] - loud[0] + 1) * frame_s if loud else 0.0


class ToneSynthesizer:
    language = "en"
    sample_rate = 16000

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        n = int(0.02 * len(text) * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        yield Pcm.from_float(0.2 * np.sin(2 * np.pi * 440 * t), self.sample_rate)


class LineTransport:
    """The caller's line: audio in from a queue, everything sent kept, played at once."""

    input_rate = 16000
    output_rate = 16000

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self.sent: list[Pcm] = []
        self._played = 0.0

    async def receive(self) -> InboundEvent:
        return await self.inbound.get()

    async def send_audio(self, audio: Pcm) -> None:
        self.sent.append(audio)
        self._played += audio.duration

    async def clear(self) -> float:
        return self._played

    def played_s(self) -> float:
        return self._played

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        return True  # played at once

    def mark_turn(self) -> None:
        self._played = 0.0

    async def send_event(self, event: CallEvent) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    async def speak(self, audio: Pcm) -> None:
        for chunk in chunks(Pcm.concat([audio, Pcm.silence(1.0, audio.sample_rate)], audio.sample_rate)):
            await self.inbound.put(CallerAudio(chunk))
            await asyncio.sleep(0)


class FakeNurse:
    """The nurse's browser: a microphone queue and what it heard."""

    def __init__(self) -> None:
        self.mic: asyncio.Queue[Pcm | None] = asyncio.Queue()
        self.heard: list[Pcm] = []
        self.closed = False

    async def receive(self) -> Pcm | None:
        return await self.mic.get()

    def send(self, audio: Pcm) -> None:
        self.heard.append(audio)

    async def close(self) -> None:
        self.closed = True

    async def speak(self, audio: Pcm) -> None:
        for chunk in chunks(Pcm.concat([audio, Pcm.silence(1.0, audio.sample_rate)], audio.sample_rate)):
            await self.mic.put(chunk)
            await asyncio.sleep(0)


def chunks(audio: Pcm, seconds: float = 0.02) -> list[Pcm]:
    step = int(audio.sample_rate * seconds)
    return [Pcm(audio.samples[i : i + step], audio.sample_rate) for i in range(0, len(audio), step)]


class Events:
    def __init__(self) -> None:
        self.items: list[CallEvent] = []
        self.changed = asyncio.Event()

    async def publish(self, event: CallEvent) -> None:
        self.items.append(event)
        self.changed.set()

    def turns(self) -> list:
        return [e.turn for e in self.items if isinstance(e, TurnRecorded)]

    async def until(self, predicate, timeout: float = 60.0):
        async def wait() -> object:
            while True:
                for turn in self.turns():
                    if predicate(turn):
                        return turn
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(wait(), timeout)


@pytest.fixture(scope="module")
def clips(say) -> dict[str, Pcm]:
    out = {text: say(text, "en") for text in (YES, CALLER_1, NURSE_1, CALLER_3)}
    durations = sorted(voiced_s(a) for a in out.values())
    assert all(b / a > 1.4 for a, b in itertools.pairwise(durations)), durations
    return out


async def test_nurse_takes_over_talks_and_hands_back(clips):
    phrases = load_phrases()
    live: dict[str, object] = {}
    engines = Engines(
        recognizer=ClipRecognizer(clips),
        synthesizers={"en": ToneSynthesizer()},
        dialogue=build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911"}, llm_capable=False),
    )
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False, silence_reprompt_s=600)
    registry = TakeoverRegistry(phrases, engines.recognizer, live)
    line, events = LineTransport(), Events()
    info = CallInfo(call_id="tk-1", language="en", channel="webrtc")
    call = live["tk-1"] = Call(info=info, transport=line, engines=engines, publish=events.publish, turn_taking=tt)
    running = asyncio.ensure_future(call.run())
    try:
        await events.until(lambda t: t.speaker == "bot" and t.index == 0)  # greeting
        await line.speak(clips[YES])  # consent
        await events.until(lambda t: t.speaker == "bot" and t.index == 2)
        await line.speak(clips[CALLER_1])
        question = await events.until(lambda t: t.speaker == "bot" and t.index == 4)
        assert "?" in question.text

        nurse = FakeNurse()
        await registry.take("tk-1", nurse, "nina")
        with pytest.raises(TakeoverError):
            await registry.take("tk-1", FakeNurse(), "ada")
        handover = await events.until(lambda t: t.speaker == "bot" and t.index == 5)
        assert handover.text == phrases.handover["en"]
        sent_before = len(line.sent)
        await nurse.speak(clips[NURSE_1])
        said = await events.until(lambda t: t.speaker == "nurse")
        assert said.text == NURSE_1 and said.index == 6
        nurse_out = Pcm.concat(line.sent[sent_before:], 16000)
        assert (
            nurse_out.duration >= clips[NURSE_1].duration * 0.9 and nurse_out.rms_dbfs() > -45
        )  # caller hears the nurse
        await line.speak(clips[CALLER_3])
        caller = await events.until(lambda t: t.speaker == "caller" and t.text == CALLER_3)
        assert caller.index == 7
        heard = Pcm.concat(nurse.heard, nurse.heard[0].sample_rate)
        assert heard.duration >= clips[CALLER_3].duration  # the nurse hears the caller
        # the bot stayed quiet: nothing after the handover sentence but the nurse's and the caller's turns
        assert [t.speaker for t in events.turns() if t.index > 5] == ["nurse", "caller"]

        await registry.hand_back("tk-1", "nina")
        back = await events.until(lambda t: t.speaker == "bot" and t.index == 8)
        assert back.text == phrases.hand_back["en"] and nurse.closed
        await line.speak(clips[YES])
        reply = await events.until(lambda t: t.speaker == "bot" and t.index == 10)
        assert reply.text and reply.text != back.text  # the dialogue answers again
        await line.inbound.put(CallerHangup())
        result = await asyncio.wait_for(running, 30)
    finally:
        if not running.done():
            running.cancel()
    assert [h.event for h in result.takeovers] == ["takeover", "handback"]
    assert result.takeovers[0].by == "nina"
    evidence_turns = {f.evidence.turn for f in result.findings if f.evidence is not None}
    assert 9 in evidence_turns or 3 in evidence_turns  # the dialogue's turn numbers follow the record's
    live.pop("tk-1")
