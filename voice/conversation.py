"""The seam between the call loop and the dialogue brain. The loop speaks the text a
`DialogueManager` yields and acts on the `BotAction`s between it; it knows nothing of triage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from voice.events import CallInfo
from voice.result import CallResult, Progress


@dataclass(frozen=True, slots=True)
class Escalate:
    """A red flag or a problem for a nurse: flag the call, tell the caller what to do now."""

    reason: str
    red_flags: tuple[str, ...] = ()
    level: Literal["emergency_ambulance", "emergency", "nurse"] = "emergency_ambulance"


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand the caller to a human line (SIP REFER / carrier transfer), after the current speech."""

    target: str = ""  # empty: the configured transfer line
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str = "completed"


@dataclass(frozen=True, slots=True)
class ExpectAnswer:
    """What the next caller turn is likely to be; lets the endpointer wait less for short answers."""

    kind: Literal["yes_no", "number", "scale", "duration", "free"] = "free"
    # Words the answer may contain (the protocol's body parts, symptoms, units): recognition hints.
    phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The structured state so far, for the caller's client and the record: the `Progress` before a
    question, the whole `CallResult` at an escalation, a transfer or the end."""

    result: CallResult | Progress


class Say(str):
    """Text to speak as one piece. `Say(text, protected=True)` marks safety advice ("call 120 now"):
    the caller can still speak over it, but the bot finishes the instruction before it yields the
    turn, and repeats it first thing if it was cut anyway (a key press); the record marks the turn.
    It is a `str`, so code that reads a dialogue's text keeps working."""

    protected: bool

    def __new__(cls, text: str, protected: bool = False) -> Say:
        obj = super().__new__(cls, text)
        obj.protected = protected
        return obj

    @property
    def text(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class HoldForNurse:
    """An escalated caller went quiet: keep the line open for a nurse (never hang up on them). The loop
    passes it to observers like any action; the dialogue also raises a nurse-level `Escalate` for the console."""

    reason: str = ""
    red_flags: tuple[str, ...] = ()


BotAction = Escalate | Transfer | EndCall | ExpectAnswer | Outcome | HoldForNurse
DialogueOutput = str | BotAction  # text is spoken (LLM tokens may come in small pieces; `Say` is a str)


@dataclass(frozen=True, slots=True)
class CallerUtterance:
    text: str
    turn_index: int
    # Words the recogniser was unsure of (probability under settings.asr_uncertain_below), for read-back.
    uncertain_words: tuple[str, ...] = ()


class DialogueManager(Protocol):
    """One per call. Each method yields text to speak, interleaved with actions."""

    def opening(self) -> AsyncIterator[DialogueOutput]: ...

    def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]: ...

    def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        """The caller said nothing for a while (`count`-th time in a row): re-prompt or end."""
        ...

    def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]: ...

    def heard(self, text: str, interrupted: bool) -> None:
        """What the caller actually heard of the last reply (less than all of it after a barge-in)."""
        ...

    def result(self) -> CallResult:
        """The call's structured result: chief complaint, findings with evidence, red flags,
        disposition, department, SBAR, actions (triage) and questionnaire answers (follow-up)."""
        ...


@runtime_checkable
class Upcoming(Protocol):
    """Optional for a dialogue: the phrases it will likely say next (its next protocol questions);
    the loop renders them ahead so they cost no synthesis when needed."""

    def upcoming(self) -> list[str]: ...


class DialogueFactory(Protocol):
    def __call__(self, info: CallInfo) -> DialogueManager: ...
