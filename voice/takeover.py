"""Live takeover: a nurse steps into a running call. The bot says one handover sentence and falls
silent; caller and nurse hear each other; the transcript keeps running (caller turns as before,
the nurse's turns transcribed and marked `speaker="nurse"`); the nurse hands back to the bot (which
goes on where it was) or ends the call.

Takeover is a capability of the call loop (`Takeable`, implemented by `voice.call.Call`): the loop
pauses its own reply, stops passing recognised turns to the dialogue, copies caller audio to the
nurse and plays hers through the call's own transport (the one paced output and inbound queue every
transport shares, voice.pacing and voice.inbound), and keeps who took over and when in the call's
result (`CallResult.takeovers`). This module holds the seams and the nurse's side:
  * `NursePeer`: the nurse's audio (web/console/takeover.py: aiortc for a nurse's browser; voice/
    stays free of a network stack);
  * `NurseSession`: a `NurseLink` that relays her audio into the call and transcribes her turns;
  * `TakeoverRegistry`: this worker's live calls, looked up by id, for the console's routes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from voice.audio import Pcm
from voice.conversation import DialogueOutput, ExpectAnswer
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded
from voice.events import CallInfo
from voice.languages import languages
from voice.ports import RecognitionHints, Recognizer
from voice.resample import StreamResampler, ToRate
from voice.result import CallResult, TakeoverStep

log = logging.getLogger("carecall.takeover")

ASR_RATE = 16_000
HistoryEvent = Literal["takeover", "handback", "end"]


class TakeoverError(RuntimeError):
    """The takeover cannot be done (no such live call, already taken over, not taken over)."""


class NursePeer(Protocol):
    """The nurse's side of the audio: what the nurse says, and where the caller's voice goes."""

    async def receive(self) -> Pcm | None:
        """The nurse's next audio chunk (any sample rate); None when the nurse has left."""
        ...

    def send(self, audio: Pcm) -> None:
        """Caller audio for the nurse to hear (must not block)."""
        ...

    async def close(self) -> None: ...


class NurseLink(Protocol):
    """What a call talks to while a nurse has it: who she is, the sentences the bot says at each
    step (in the call's language), where the caller's audio goes, and her side of the call."""

    nurse: str
    handover: str
    hand_back: str
    goodbye: str

    def hear(self, audio: Pcm) -> None:
        """Caller audio for the nurse (any rate; must not block)."""
        ...

    async def run(self, call: Takeable) -> None:
        """The nurse's side until she leaves (returns) or the takeover ends (cancelled)."""
        ...


@runtime_checkable
class Takeable(Protocol):
    """The call loop's takeover capability (voice.call.Call)."""

    info: CallInfo

    @property
    def nurse(self) -> str | None:
        """Who has the call now; None while the bot has it."""
        ...

    def now_s(self) -> float: ...

    async def take_over(self, link: NurseLink) -> None:
        """Stop the bot's reply, say `link.handover`, then relay both ways and answer nothing.
        Raises TakeoverError when the call is not live or already taken over."""
        ...

    async def hand_back(self, nurse: str, why: str | None = None) -> None:
        """The bot says `hand_back` and goes on with the dialogue where it left it."""
        ...

    async def end_by_nurse(self, nurse: str) -> None:
        """The bot says `goodbye` and the call ends (reason "taken_over")."""
        ...

    async def nurse_speaks(self, audio: Pcm) -> None:
        """The nurse's audio, to the caller (through the call's transport) and the recording."""
        ...

    async def record_nurse_turn(self, text: str, start_s: float, end_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Phrases:
    """What the bot says at a takeover, per language (prompts/takeover.yaml)."""

    handover: dict[str, str]
    hand_back: dict[str, str]
    goodbye: dict[str, str]

    def say(self, which: dict[str, str], language: str) -> str:
        # the language's own words, else those of the language it takes its rules from, else the fallback's
        return next((which[k] for k in languages.lookup_order(language) if which.get(k)), "")


@dataclass(eq=False)
class TakeoverState:
    """One call's takeover as the call loop keeps it: the nurse's link while she has the call,
    her side's task, the question pending when she took over, and the history for the record."""

    link: NurseLink | None = None
    task: asyncio.Task[Any] | None = None
    pending: RecognitionHints | None = None  # what the dialogue's last question expects
    history: list[TakeoverStep] = field(default_factory=list)
    to_line: ToRate | None = None  # her audio → the line's rate

    @property
    def quiet(self) -> bool:
        """The dialogue is not asked anything (a nurse has the call, or ended it)."""
        return self.link is not None or self.ending

    @property
    def ending(self) -> bool:
        """The nurse ended the call: the goodbye, then the end (her last step says so)."""
        return bool(self.history) and self.history[-1].event == "end"

    def begin(self, link: NurseLink, at_s: float, pending: RecognitionHints | None) -> None:
        if self.link is not None:
            raise TakeoverError(f"the call is already taken over by {self.link.nurse}")
        self.link, self.pending = link, pending
        self._note("takeover", link.nurse, at_s, None)

    def release(self, event: HistoryEvent, by: str, at_s: float, why: str | None) -> NurseLink:
        link, task = self.link, self.task
        if link is None:
            raise TakeoverError("the call is not taken over")
        self.link = self.task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # her side closes its peer as it goes
        self._note(event, by, at_s, why)
        return link

    def _note(self, event: HistoryEvent, by: str, at_s: float, why: str | None) -> None:
        self.history.append(TakeoverStep(event, by, round(at_s, 3), why or None))

    def with_history(self, result: CallResult) -> CallResult:
        return dataclasses.replace(result, takeovers=result.takeovers + tuple(self.history)) if self.history \
            else result

    async def resume(self, sentence: str) -> AsyncIterator[DialogueOutput]:
        """The hand-back reply: the sentence, then the pending question's expectations again, so
        the caller's next answer is heard as an answer to it (endpointing and recognition hints)."""
        yield sentence
        if self.pending is not None:
            yield ExpectAnswer(self.pending.kind, self.pending.phrases)  # type: ignore[arg-type]  # came from one


async def say_only(sentence: str) -> AsyncIterator[DialogueOutput]:
    yield sentence


class NurseSession:
    """A nurse's side of a taken-over call (`NurseLink`): her audio goes into the call as it comes,
    and her utterances are transcribed into the call's record beside it (a slow decode never holds
    up her voice)."""

    def __init__(self, peer: NursePeer, nurse: str, recognizer: Recognizer, phrases: Phrases, language: str) -> None:
        self.peer = peer
        self.nurse = nurse
        self.recognizer = recognizer
        self.language = language
        self.handover = phrases.say(phrases.handover, language)
        self.hand_back = phrases.say(phrases.hand_back, language)
        self.goodbye = phrases.say(phrases.goodbye, language)

    def hear(self, audio: Pcm) -> None:
        self.peer.send(audio)

    async def run(self, call: Takeable) -> None:
        utterances: asyncio.Queue[tuple[Pcm, float, float]] = asyncio.Queue()
        try:
            async with asyncio.TaskGroup() as tg:
                transcriber = tg.create_task(self._transcribe(call, utterances))
                await self._relay(call, utterances)
                transcriber.cancel()  # she left: what is still being decoded is not waited for
        finally:
            await self.peer.close()

    async def _relay(self, call: Takeable, utterances: asyncio.Queue[tuple[Pcm, float, float]]) -> None:
        endpointer = Endpointer(EndpointerConfig())
        to_asr = ToRate(ASR_RATE, StreamResampler)  # (one converter per rate, not one per frame)
        started = call.now_s()
        while (audio := await self.peer.receive()) is not None:
            await call.nurse_speaks(audio)
            for ev in endpointer.feed(to_asr(audio)):
                if isinstance(ev, SpeechEnded):
                    utterances.put_nowait((ev.audio, started + ev.start_s, started + ev.speech_end_s))

    async def _transcribe(self, call: Takeable, utterances: asyncio.Queue[tuple[Pcm, float, float]]) -> None:
        while True:
            audio, start_s, end_s = await utterances.get()
            try:
                heard = await self.recognizer.transcribe(audio, self.language)
            except Exception as exc:  # one lost nurse turn in the transcript, never a broken takeover
                log.warning("call %s: a nurse turn could not be transcribed: %r", call.info.call_id[:8], exc)
                continue
            if heard.text.strip():
                await call.record_nurse_turn(heard.text.strip(), start_s, end_s)


class TakeoverRegistry:
    """Takeover of this worker's live calls, found by id in `calls` (the hub's running calls)."""

    def __init__(self, phrases: Phrases, recognizer: Recognizer, calls: Mapping[str, object]) -> None:
        self.phrases = phrases
        self.recognizer = recognizer
        self.calls = calls

    def call(self, call_id: str) -> Takeable:
        call = self.calls.get(call_id)
        if not isinstance(call, Takeable):
            raise TakeoverError("no such live call on this worker")
        return call

    async def take(self, call_id: str, peer: NursePeer, nurse: str) -> None:
        call = self.call(call_id)
        await call.take_over(NurseSession(peer, nurse, self.recognizer, self.phrases, call.info.language))

    async def hand_back(self, call_id: str, nurse: str) -> None:
        await self.call(call_id).hand_back(nurse)

    async def end(self, call_id: str, nurse: str) -> None:
        await self.call(call_id).end_by_nurse(nurse)
