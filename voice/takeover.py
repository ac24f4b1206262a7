"""Live takeover: a nurse steps into a running call. The bot says one handover sentence and falls
silent; caller and nurse hear each other; the transcript keeps running (caller turns as before,
the nurse's turns transcribed and marked `speaker="nurse"`); the nurse hands back to the bot or ends
the call.

It needs no change inside the call loop: `TakeoverRegistry.wrap(call_factory)` builds each call with
three thin wrappers around the loop's own seams, so the loop keeps running unaware:
  * the Transport: caller audio is also copied to the nurse, the nurse's audio goes out to the caller,
    and the control's commands enter the loop as DTMF events with reserved digits;
  * the DialogueManager: while the nurse has the call it says nothing (respond, silence re-prompts and
    digits yield nothing); the reserved digits yield the handover / hand-back / goodbye sentences
    (the loop interrupts any reply in progress before it acts on a digit);
  * the publish function: turn indexes are renumbered so that the nurse's turns sit between the
    loop's own in one sequence (and the dialogue's evidence turns follow the same numbering).
The nurse's audio arrives through a `NursePeer` (web/console/takeover_rtc.py: aiortc for a nurse's
browser); voice/ stays free of a network stack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from voice.audio import Pcm
from voice.conversation import CallerUtterance, DialogueManager, DialogueOutput, EndCall
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded
from voice.events import CallerAudio, CallerHangup, CallEvent, CallInfo, Dtmf, InboundEvent, Turn, TurnRecorded
from voice.ports import Recognizer, Transport
from voice.resample import StreamResampler
from voice.result import CallResult, TakeoverStep

log = logging.getLogger("carecall.takeover")

ASR_RATE = 16_000
TAKE, HAND_BACK, END = "takeover", "handback", "takeover-end"  # reserved "digits": never from a keypad
State = Literal["bot", "nurse"]


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


@dataclass(frozen=True, slots=True)
class Phrases:
    """What the bot says at a takeover, per language (prompts/takeover.yaml)."""

    handover: dict[str, str]
    hand_back: dict[str, str]
    goodbye: dict[str, str]


class CallTakeover:
    """One call's takeover state and its three wrappers."""

    def __init__(self, info: CallInfo, recognizer: Recognizer, phrases: Phrases,
                 publish: Callable[[CallEvent], Awaitable[None]]) -> None:  # fmt: skip
        self.info = info
        self.recognizer = recognizer
        self.phrases = phrases
        self._publish = publish
        self.state: State = "bot"
        self.nurse: str | None = None
        self.history: list[TakeoverStep] = []  # who took over / handed back, when (seconds into the call)
        self._peer: NursePeer | None = None
        self._commands: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self._nurse_task: asyncio.Task[None] | None = None
        self._offset = 0  # nurse turns inserted so far
        self._next_index = 0
        self._t0 = time.monotonic()
        self.transport: TakeoverTransport | None = None

    # --- the nurse's commands (from the console) --------------------------------------------------
    async def take(self, peer: NursePeer, nurse: str) -> None:
        if self.state == "nurse":
            raise TakeoverError(f"the call is already taken over by {self.nurse}")
        self.state, self.nurse, self._peer = "nurse", nurse, peer
        self.history.append(TakeoverStep("takeover", nurse, round(self.now_s(), 3)))
        self._nurse_task = asyncio.ensure_future(self._nurse_loop(peer))
        await self._commands.put(Dtmf(TAKE))

    async def hand_back(self, nurse: str) -> None:
        if self.state != "nurse":
            raise TakeoverError("the call is not taken over")
        await self._release()
        self.history.append(TakeoverStep("handback", nurse, round(self.now_s(), 3)))
        await self._commands.put(Dtmf(HAND_BACK))

    async def end(self, nurse: str) -> None:
        if self.state != "nurse":
            raise TakeoverError("the call is not taken over")
        self.history.append(TakeoverStep("end", nurse, round(self.now_s(), 3)))
        await self._commands.put(Dtmf(END))

    async def _release(self) -> None:
        self.state = "bot"
        task, self._nurse_task = self._nurse_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        peer, self._peer = self._peer, None
        if peer is not None:
            with contextlib.suppress(Exception):
                await peer.close()

    def now_s(self) -> float:
        return time.monotonic() - self._t0

    # --- wrappers ---------------------------------------------------------------------------------
    def wrap_transport(self, inner: Transport) -> TakeoverTransport:
        self.transport = TakeoverTransport(inner, self)
        return self.transport

    def wrap_dialogue(self, inner: DialogueManager) -> TakeoverDialogue:
        return TakeoverDialogue(inner, self)

    async def publish(self, event: CallEvent) -> None:
        """The loop's events, with turn indexes renumbered around the nurse's turns."""
        if isinstance(event, TurnRecorded):
            turn = replace(event.turn, index=event.turn.index + self._offset)
            self._next_index = max(self._next_index, turn.index + 1)
            event = TurnRecorded(event.call_id, turn)
        await self._publish(event)

    async def _record_nurse(self, text: str, start_s: float, end_s: float) -> None:
        index = self._next_index
        self._offset += 1
        self._next_index = index + 1
        turn = Turn(index=index, speaker="nurse", text=text, start_s=round(start_s, 3), end_s=round(end_s, 3))  # type: ignore[arg-type]
        await self._publish(TurnRecorded(self.info.call_id, turn))

    # --- the nurse's audio: out to the caller, and into the transcript ------------------------------
    async def _nurse_loop(self, peer: NursePeer) -> None:
        endpointer = Endpointer(EndpointerConfig())
        to_asr: dict[int, StreamResampler] = {}
        started = self.now_s()
        fed_s = 0.0
        while True:
            audio = await peer.receive()
            if audio is None:
                return
            if self.transport is not None:
                await self.transport.nurse_audio(audio)
            if audio.sample_rate != ASR_RATE:
                rs = to_asr.setdefault(audio.sample_rate, StreamResampler(audio.sample_rate, ASR_RATE))
                audio = rs.process(audio)
            fed_s += audio.duration
            for ev in endpointer.feed(audio):
                if isinstance(ev, SpeechEnded):
                    t = await self.recognizer.transcribe(ev.audio, self.info.language)
                    if t.text.strip():
                        await self._record_nurse(t.text.strip(), started + ev.start_s, started + ev.speech_end_s)


class TakeoverTransport:
    """The call's transport as the loop sees it during and outside a takeover."""

    def __init__(self, inner: Transport, control: CallTakeover) -> None:
        self.inner = inner
        self.control = control
        self.input_rate = inner.input_rate
        self.output_rate = inner.output_rate
        self._merged: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._commands: asyncio.Task[None] | None = None
        self._out: dict[int, StreamResampler] = {}

    def __getattr__(self, name: str) -> Any:  # transfer(), pc, ... of the transport underneath
        return getattr(self.inner, name)

    async def _pump_inner(self) -> None:
        while True:
            event = await self.inner.receive()
            if isinstance(event, CallerAudio) and self.control.state == "nurse" and self.control._peer is not None:
                self.control._peer.send(event.audio)
            await self._merged.put(event)
            if isinstance(event, CallerHangup):
                return

    async def _pump_commands(self) -> None:
        while True:
            await self._merged.put(await self.control._commands.get())

    async def receive(self) -> InboundEvent:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._pump_inner())
            self._commands = asyncio.ensure_future(self._pump_commands())
        return await self._merged.get()

    async def nurse_audio(self, audio: Pcm) -> None:
        if audio.sample_rate != self.output_rate:
            rs = self._out.setdefault(audio.sample_rate, StreamResampler(audio.sample_rate, self.output_rate))
            audio = rs.process(audio)
        if len(audio):
            await self.inner.send_audio(audio)

    async def send_audio(self, audio: Pcm) -> None:
        await self.inner.send_audio(audio)

    async def clear(self) -> float:
        return await self.inner.clear()

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        return await self.inner.wait_for_playout(timeout)

    def played_s(self) -> float:
        return self.inner.played_s()

    def mark_turn(self) -> None:
        self.inner.mark_turn()

    async def send_event(self, event: CallEvent) -> None:
        await self.inner.send_event(event)

    async def hangup(self, reason: str) -> None:
        await self.stop()
        await self.inner.hangup(reason)

    async def stop(self) -> None:
        for task in (self._pump, self._commands):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.control._release()


class TakeoverDialogue:
    """The call's dialogue, silent while a nurse has the call."""

    def __init__(self, inner: DialogueManager, control: CallTakeover) -> None:
        self.inner = inner
        self.control = control

    def __getattr__(self, name: str) -> Any:  # upcoming(), ... of the dialogue underneath
        return getattr(self.inner, name)

    def _say(self, phrases: dict[str, str]) -> str:
        return phrases.get(self.control.info.language) or phrases.get("en") or ""

    async def _nothing(self) -> AsyncIterator[DialogueOutput]:
        return
        yield  # an empty async generator

    def opening(self) -> AsyncIterator[DialogueOutput]:
        return self.inner.opening()

    def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        if self.control.state == "nurse":
            return self._nothing()  # the caller talks to the nurse; the transcript keeps the turn
        shifted = CallerUtterance(utterance.text, utterance.turn_index + self.control._offset)
        return self.inner.respond(shifted)

    def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        return self._nothing() if self.control.state == "nurse" else self.inner.on_silence(count)

    def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]:
        if digit in (TAKE, HAND_BACK, END):
            return self._command(digit)
        return self._nothing() if self.control.state == "nurse" else self.inner.on_dtmf(digit)

    async def _command(self, digit: str) -> AsyncIterator[DialogueOutput]:
        p = self.control.phrases
        if digit == TAKE:
            yield self._say(p.handover)
        elif digit == HAND_BACK:
            yield self._say(p.hand_back)
        else:
            yield self._say(p.goodbye)
            yield EndCall("taken_over")

    def heard(self, text: str, interrupted: bool) -> None:
        self.inner.heard(text, interrupted)

    def result(self) -> CallResult:
        result = self.inner.result()
        return replace(result, takeovers=(*result.takeovers, *self.control.history))


class _TakeoverCall:
    """A call as the hub sees it; forgets its takeover when it ends."""

    def __init__(self, call: Any, control: CallTakeover, registry: TakeoverRegistry) -> None:
        self.call, self.control, self.registry = call, control, registry

    def __getattr__(self, name: str) -> Any:  # cancel(), state, turns, ... of the call itself
        return getattr(self.call, name)

    async def run(self) -> CallResult:
        try:
            return await self.call.run()  # type: ignore[no-any-return]
        finally:
            self.registry.calls.pop(self.control.info.call_id, None)
            if self.control.transport is not None:
                await self.control.transport.stop()


class TakeoverRegistry:
    """The takeovers of this worker's live calls, by call id."""

    def __init__(self, phrases: Phrases) -> None:
        self.phrases = phrases
        self.calls: dict[str, CallTakeover] = {}

    def wrap(self, call_factory: Callable[..., Any]) -> Callable[..., Any]:
        """The hub's call factory, building every call with the takeover wrappers."""

        def build(*, info: CallInfo, transport: Transport, engines: Any, publish: Any, **kw: Any) -> Any:
            control = CallTakeover(info, engines.recognizer, self.phrases, publish)
            self.calls[info.call_id] = control
            dialogue = engines.dialogue
            wrapped = replace(engines, dialogue=lambda i: control.wrap_dialogue(dialogue(i)))
            call = call_factory(info=info, transport=control.wrap_transport(transport), engines=wrapped,
                                publish=control.publish, **kw)  # fmt: skip
            return _TakeoverCall(call, control, self)

        return build

    def get(self, call_id: str) -> CallTakeover:
        control = self.calls.get(call_id)
        if control is None:
            raise TakeoverError("no such live call on this worker")
        return control
