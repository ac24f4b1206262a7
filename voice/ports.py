"""The seams between the call loop and its engines and transports (structural `Protocol`s).

The loop knows only these; concrete engines are picked in `server.py` from the settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from voice.audio import Pcm
from voice.events import CallEvent, InboundEvent


@dataclass(frozen=True, slots=True)
class WordInfo:
    """One recognised word (a character or a few for Mandarin), times in seconds from the utterance start."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class RecognitionHints:
    """What the dialogue expects next, so the recogniser can lean towards it: the kind of answer
    ("yes_no", "number", "scale", "duration", "free") and phrases the answer may contain (the
    protocol's body parts and symptoms). A hint biases; it never forces a word into a transcript."""

    kind: str = "free"
    phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_s: float  # seconds of audio decoded
    processing_s: float  # wall time the decode took
    words: tuple[WordInfo, ...] = ()  # finals: per-word times and probabilities (may be empty)


@runtime_checkable
class Recognizer(Protocol):
    """Speech to text. Implementations run inference off the event loop."""

    async def transcribe(
        self, audio: Pcm, language: str, *, partial: bool = False, hints: RecognitionHints | None = None
    ) -> Transcript:
        """Decode a whole utterance. `partial=True` asks for a quick, cheaper pass while the caller
        is still speaking; the result may be revised by the final decode. `hints`: what the
        question just asked expects (see `RecognitionHints`)."""
        ...


@runtime_checkable
class Synthesizer(Protocol):
    """Text to speech for one language. Audio comes out in chunks as soon as it is ready."""

    language: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[Pcm]: ...


@runtime_checkable
class Transport(Protocol):
    """How a caller's audio reaches a call and the bot's audio goes back (WebSocket, WebRTC,
    Media Streams, SIP/RTP). Audio crosses at the wire's rate (`input_rate` in, `output_rate` out;
    the call loop resamples); the transport paces bot audio in real time (voice.pacing)."""

    input_rate: int  # rate of the audio `receive` delivers
    output_rate: int  # rate `send_audio` expects

    async def receive(self) -> InboundEvent:
        """Next thing from the caller: audio, a DTMF digit, a drop notice, or a hang-up (after which no more)."""
        ...

    async def send_audio(self, audio: Pcm) -> None:
        """Queue bot audio. Returns once the transport accepted it (it may buffer a little ahead
        of real time); the transport plays it at real-time pace."""
        ...

    async def clear(self) -> float:
        """Drop bot audio queued but not yet played (barge-in); returns the seconds of the current
        bot turn the caller heard."""
        ...

    def played_s(self) -> float:
        """Seconds of bot audio the caller has heard in the current bot turn (see `mark_turn`)."""
        ...

    def mark_turn(self) -> None:
        """A new bot turn starts: `played_s` counts from 0."""
        ...

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        """Until all bot audio sent so far has been played (or cleared); False on timeout."""
        ...

    async def send_event(self, event: CallEvent) -> None:
        """Tell the caller's client what happens (captions, state). Phone lines ignore it."""
        ...

    async def hangup(self, reason: str) -> None: ...


@runtime_checkable
class Transferable(Protocol):
    """A transport that can hand the caller to a human line (SIP REFER, carrier `<Dial>`)."""

    async def transfer(self, target: str) -> bool:
        """True once the transfer was accepted (the call then ends here)."""
        ...


@runtime_checkable
class Holdable(Protocol):
    """A transport that can stop the bot's audio at once and go on from there (voice.pacing `hold`).
    The call holds the bot the moment the caller starts talking over it: the caller's speech then
    reaches a browser's or handset's echo canceller without the bot's voice as its reference (which
    garbles the caller's words), and a backchannel ("mm-hm") costs only a short pause."""

    def hold(self) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class Prefetching(Protocol):
    """A synthesiser that can render phrases ahead of need (voice.tts.cache)."""

    def prefetch(self, clauses: list[str]) -> None: ...


class CallObserver(Protocol):
    """Anything that follows a call's events: the call record, the console's live view, metrics."""

    async def on_event(self, event: CallEvent) -> bool | None:
        """Follow one event. The call record answers a finished turn with True once it is
        committed, False if it could not confirm that in time; others answer None."""
        ...
