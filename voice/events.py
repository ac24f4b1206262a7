"""What happens in a call, as frozen dataclasses: inbound events from the caller's transport and
call events that observers (records, console, the caller's client) receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from voice.audio import Pcm
from voice.result import CallResult

Speaker = Literal["caller", "bot", "nurse"]  # nurse: a nurse who took the call over (voice.takeover)
CallState = Literal["connecting", "listening", "thinking", "speaking", "ended"]


# --- from the caller's transport -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallerAudio:
    audio: Pcm


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class CallerHangup:
    reason: str = "caller hung up"


@dataclass(frozen=True, slots=True)
class AudioDropped:
    """The transport dropped caller audio (sent faster than real time, or the loop fell behind)."""

    total_s: float  # seconds dropped in this call so far
    reason: str


InboundEvent = CallerAudio | Dtmf | CallerHangup | AudioDropped


# --- what a call tells its observers ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallInfo:
    call_id: str
    language: str  # a code of voice.languages (checked by voice.admission)
    channel: str  # websocket | webrtc | media-stream | sip
    mode: Literal["triage", "followup"] = "triage"
    params: dict[str, Any] = field(default_factory=dict)  # e.g. follow-up patient, campaign ids


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """Milliseconds; None where a stage did not happen in this turn."""

    endpoint_wait_ms: float | None = None  # last caller speech → endpoint decided
    asr_ms: float | None = None  # endpoint → final transcript
    llm_first_token_ms: float | None = None  # transcript → first reply text
    tts_first_audio_ms: float | None = None  # first reply text → first audio synthesised
    voice_to_voice_ms: float | None = None  # end of caller speech → first bot audio sent


@dataclass(frozen=True, slots=True)
class Turn:
    index: int
    speaker: Speaker
    text: str  # bot: what it meant to say; caller: final transcript
    start_s: float  # seconds since the call started
    end_s: float
    interrupted: bool = False
    heard_text: str | None = None  # bot turns: what the caller heard before a barge-in
    metrics: TurnMetrics | None = None
    protected: bool = False  # bot turns: it carried safety advice the bot finished or repeated (conversation.Say)


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_id: str
    info: CallInfo
    started_at: float  # wall clock (time.time())


@dataclass(frozen=True, slots=True)
class StateChanged:
    call_id: str
    state: CallState


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    call_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TurnRecorded:
    call_id: str
    turn: Turn
    # False when the call record could not confirm the commit in time (a slow or unreachable
    # database): the client is told the turn is final but not yet stored (issue 10 #6)
    stored: bool = True


@dataclass(frozen=True, slots=True)
class ActionTaken:
    """The dialogue asked for something beyond speech (escalation, transfer, structured update)."""

    call_id: str
    action: Any  # one of voice.conversation's BotAction types


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    reason: str
    result: CallResult
    recording_path: str | None = None


CallEvent = CallStarted | StateChanged | PartialTranscript | TurnRecorded | ActionTaken | CallEnded
