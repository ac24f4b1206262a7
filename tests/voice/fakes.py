"""Fakes of CareCall's own engines for deterministic call-loop tests (run on virtual time, see
virtual_time.py): the real `voice.call.Call`, endpointer (webrtcvad), clause splitter, paced output
and inbound queue, driven by a scripted caller.

- Caller speech is a harmonic "vowel" whose pitch names the utterance (`Speech(start, end, f0)`);
  `FakeRecognizer` reads the pitch back to the scripted text after `asr_s` of (virtual) time (or
  `slow_finals[n]` for the n-th final), with per-word probabilities from `words`, and keeps the
  hints each final decode was given.
- `FakeSynthesizer` renders `seconds_per_char` of a tone per character, in chunks, after
  `first_audio_s`; `hang=True` never yields (a TTS engine that is stuck).
- `FakeTransport` is a real `PacedTransport`: what it sends is what the caller "hears", time-stamped.
- `ScriptedDialogue` answers caller texts from a table and records the utterances it got and what
  `heard()` was told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import CallerUtterance, DialogueOutput
from voice.events import CallerAudio, CallerHangup, CallEvent, CallInfo, Dtmf, Turn, TurnRecorded
from voice.hub import Engines
from voice.ports import RecognitionHints, Transcript, WordInfo
from voice.result import CallResult
from voice.transports.base import PacedTransport

RATE = 16_000
FRAME = 320


def now() -> float:
    return asyncio.get_running_loop().time()


def vowel(f0: float, start_sample: int, n: int, amplitude: int = 8000) -> np.ndarray:
    t = (np.arange(n) + start_sample) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 15))
    return (x / 2.5 * amplitude).astype(np.int16)


def pitch_of(samples: np.ndarray) -> float:
    if len(samples) < FRAME or not np.abs(samples).max():
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    band = (freqs > 60) & (freqs < 400)
    return float(freqs[band][np.argmax(spectrum[band])])


@dataclass(frozen=True)
class Speech:
    start_s: float
    end_s: float
    f0: float  # names the utterance (FakeRecognizer's table)


@dataclass(frozen=True)
class Key:
    at_s: float
    digit: str


@dataclass(frozen=True)
class HangUp:
    at_s: float


class FakeRecognizer:
    def __init__(self, texts: dict[float, str], *, asr_s: float = 0.2, partial_s: float = 0.1,
                 slow_finals: dict[int, float] | None = None,
                 words: dict[str, tuple[WordInfo, ...]] | None = None) -> None:
        self.texts = texts
        self.asr_s = asr_s
        self.partial_s = partial_s
        self.slow_finals = slow_finals or {}  # the n-th final decode begun (1-based) takes this long
        self.words = words or {}  # text -> its words with probabilities (finals only)
        self.started = 0  # final decodes begun (some are cancelled as stale)
        self.finals = 0  # final decodes completed
        self.partials = 0
        self.hints: list[RecognitionHints | None] = []  # what each final decode begun was told to expect
        self.finished_at: list[float] = []  # loop time each final decode completed

    def text_for(self, samples: np.ndarray) -> str:
        f0 = pitch_of(samples)
        best = min(self.texts, key=lambda k: abs(k - f0), default=None)
        return self.texts[best] if best is not None and abs(best - f0) < 8 else ""

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False,
                         hints: RecognitionHints | None = None) -> Transcript:
        if partial:
            await asyncio.sleep(self.partial_s)
            self.partials += 1
            return Transcript(self.text_for(audio.samples), language, audio.duration, self.partial_s)
        self.started += 1
        self.hints.append(hints)
        took = self.slow_finals.get(self.started, self.asr_s)
        await asyncio.sleep(took)
        self.finals += 1
        self.finished_at.append(now())
        text = self.text_for(audio.samples)
        return Transcript(text, language, audio.duration, took, self.words.get(text, ()))


class FakeSynthesizer:
    def __init__(self, *, seconds_per_char: float = 0.05, first_audio_s: float = 0.05, chunk_s: float = 0.2,
                 hang: bool = False, language: str = "en", sample_rate: int = RATE, tail_s: float = 0.0) -> None:
        self.language = language
        self.tail_s = tail_s  # silence after each clause's tone, as a real voice ends its audio
        self.sample_rate = sample_rate
        self.seconds_per_char = seconds_per_char
        self.first_audio_s = first_audio_s
        self.chunk_s = chunk_s
        self.hang = hang
        self.said: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        self.said.append(text)
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(self.first_audio_s)
        total = round(len(text) * self.seconds_per_char * self.sample_rate)
        done = 0
        while done < total:
            n = min(round(self.chunk_s * self.sample_rate), total - done)
            t = (np.arange(n) + done) / self.sample_rate
            yield Pcm((3000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), self.sample_rate)
            done += n
            await asyncio.sleep(0.005)  # much faster than real time, like the real engines
        if self.tail_s:
            yield Pcm.silence(self.tail_s, self.sample_rate)


class FakeTransport(PacedTransport):
    def __init__(self, *, rate: int = RATE, lead_s: float = 0.06) -> None:
        super().__init__(input_rate=rate, output_rate=rate, send_frame=self._heard, lead_s=lead_s, name="fake")
        self.heard: list[tuple[float, bool]] = []  # (time sent, bot audio or silence)
        self.events: list[tuple[float, CallEvent]] = []
        self.clears: list[float] = []
        self.hung_up: str | None = None
        self.output.start()

    async def _heard(self, frame: Pcm, bot: bool) -> None:
        self.heard.append((now(), bool(np.abs(frame.samples).max() > 0)))

    async def on_clear(self) -> None:
        self.clears.append(now())

    async def send_event(self, event: CallEvent) -> None:
        self.events.append((now(), event))

    async def hangup(self, reason: str) -> None:
        await self.output.wait_for_playout(5.0)
        self.hung_up = reason
        await self.output.close()

    def audio_times(self) -> list[float]:
        return [t for t, loud in self.heard if loud]


class ScriptedDialogue:
    """Answers from a table: caller text → outputs (a list, or a function of the utterance)."""

    def __init__(self, answers: dict[str, list[DialogueOutput]], *, opening: list[DialogueOutput] | None = None,
                 on_silence: Callable[[int], list[DialogueOutput]] | None = None,
                 on_dtmf: dict[str, list[DialogueOutput]] | None = None) -> None:
        self.answers = answers
        self._opening = opening or []
        self._on_silence = on_silence or (lambda n: [f"Are you still there? ({n})"])
        self._on_dtmf = on_dtmf or {}
        self.heard_calls: list[tuple[str, bool]] = []
        self.utterances: list[str] = []
        self.received: list[CallerUtterance] = []  # the whole utterances (uncertain words too)
        self.silences: list[int] = []

    async def _say(self, outputs: list[DialogueOutput]) -> AsyncIterator[DialogueOutput]:
        for out in outputs:
            yield out

    def opening(self) -> AsyncIterator[DialogueOutput]:
        return self._say(self._opening)

    def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        self.utterances.append(utterance.text)
        self.received.append(utterance)
        return self._say(self.answers.get(utterance.text, ["Sorry?"]))

    def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        self.silences.append(count)
        return self._say(self._on_silence(count))

    def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]:
        return self._say(self._on_dtmf.get(digit, [f"You pressed {digit}."]))

    def heard(self, text: str, interrupted: bool) -> None:
        self.heard_calls.append((text, interrupted))

    def result(self) -> CallResult:
        return CallResult(mode="triage", call_id="fake")


@dataclass
class Scenario:
    """One scripted call: what the caller does when, and the engines' behaviour."""

    script: list[Speech | Key | HangUp]
    dialogue: ScriptedDialogue
    texts: dict[float, str]
    synthesizer: FakeSynthesizer = field(default_factory=FakeSynthesizer)
    turn_taking: TurnTaking = field(default_factory=lambda: TurnTaking(partial_interval_s=0.0))
    asr_s: float = 0.2
    slow_finals: dict[int, float] = field(default_factory=dict)  # FakeRecognizer's
    words: dict[str, tuple[WordInfo, ...]] = field(default_factory=dict)  # FakeRecognizer's
    duration_s: float = 20.0  # the caller hangs up after this (if nothing ended the call)
    observer_delay_s: float = 0.0  # an observer that takes this long per event (a slow disk)


@dataclass
class Outcome:
    result: CallResult
    transport: FakeTransport
    recognizer: FakeRecognizer
    events: list[tuple[float, CallEvent]]  # as the observers got them
    t0: float
    end_reason: str = ""

    def turns(self) -> list[Turn]:
        return [e.turn for _, e in self.events if isinstance(e, TurnRecorded)]

    def rel(self, t: float) -> float:
        return round(t - self.t0, 3)


async def _caller(transport: FakeTransport, script: list[Speech | Key | HangUp], duration_s: float,
                  t0: float) -> None:
    """Feeds 20 ms frames in real time: a vowel inside each Speech, silence elsewhere."""
    n = 0
    keys = sorted((s for s in script if isinstance(s, Key)), key=lambda k: k.at_s)
    hangups = [s.at_s for s in script if isinstance(s, HangUp)]
    end = min([duration_s, *hangups])
    while n * 0.02 < end:
        at = n * 0.02
        while keys and keys[0].at_s <= at:
            transport.inbound.put(Dtmf(keys.pop(0).digit))
        speech = next((s for s in script if isinstance(s, Speech) and s.start_s <= at < s.end_s), None)
        samples = vowel(speech.f0, n * FRAME, FRAME) if speech else np.zeros(FRAME, np.int16)
        transport.inbound.put_audio(CallerAudio(Pcm(samples, RATE)))
        n += 1
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - now()))
    transport.inbound.put(CallerHangup("caller hung up"))


async def run_scenario(sc: Scenario) -> Outcome:
    transport = FakeTransport()
    recognizer = FakeRecognizer(sc.texts, asr_s=sc.asr_s, slow_finals=sc.slow_finals, words=sc.words)
    events: list[tuple[float, CallEvent]] = []

    async def publish(event: CallEvent) -> None:
        if sc.observer_delay_s:
            await asyncio.sleep(sc.observer_delay_s)
        events.append((now(), event))

    engines = Engines(recognizer=recognizer, synthesizers={"en": sc.synthesizer},
                      dialogue=lambda info: sc.dialogue)  # type: ignore[arg-type]
    info = CallInfo(call_id="fake0001", language="en", channel="websocket")
    call = Call(info=info, transport=transport, engines=engines, publish=publish, turn_taking=sc.turn_taking)
    t0 = now()
    caller = asyncio.create_task(_caller(transport, sc.script, sc.duration_s, t0))
    try:
        result = await call.run()
    finally:
        caller.cancel()
        await transport.output.close()
    return Outcome(result, transport, recognizer, events, t0, call._end_reason)
