"""A simulated call as the call loop would publish it: the events, in order, for the records and
console tests (no audio, no models)."""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any

from voice.conversation import Escalate, Outcome
from voice.events import (
    ActionTaken,
    CallEnded,
    CallEvent,
    CallInfo,
    CallStarted,
    PartialTranscript,
    StateChanged,
    Turn,
    TurnMetrics,
    TurnRecorded,
)
from voice.result import CallResult, Complaint, Evidence, Finding, Progress, Sbar

XSS = "<script>alert(1)</script>"
SQL = "'; DROP TABLE calls; --"

TRIAGE_TURNS = [
    ("bot", "Hello, this is CareCall. What is the main problem today?"),
    ("caller", f"I have chest pain going down my left arm {XSS}"),
    ("bot", "Is the pain spreading to your arm, jaw or back?"),
    ("caller", f"yes and I am sweating {SQL}"),
    ("bot", "Please call 911 now."),
]


def turn(i: int, speaker: str, text: str, **kw: Any) -> Turn:
    metrics = (
        TurnMetrics(
            endpoint_wait_ms=300, asr_ms=420, llm_first_token_ms=90, tts_first_audio_ms=120, voice_to_voice_ms=930.0 + i
        )
        if speaker == "bot" and i
        else None
    )
    return Turn(index=i, speaker=speaker, text=text, start_s=i * 2.0, end_s=i * 2.0 + 1.8, metrics=metrics, **kw)  # type: ignore[arg-type]


def triage_result() -> CallResult:
    return CallResult(
        mode="triage",
        chief_complaint="chest_pain",
        chief_complaint_name="chest pain",
        complaints=(Complaint("chest_pain", "emergency_ambulance"),),
        disposition="emergency_ambulance",
        department="Emergency",
        findings=(
            Finding("chest_pain", True, "rules", Evidence(1, f"I have chest pain going down my left arm {XSS}")),
            Finding("sweating", True, "answer", Evidence(3, f"yes and I am sweating {SQL}")),
        ),
        red_flags=("chest_pain_radiating",),
        summary=Sbar(
            situation="Chest pain radiating to the left arm with sweating.",
            background="Not asked.",
            assessment="Possible acute coronary syndrome.",
            recommendation="Ambulance now.",
        ),
    )


def triage_call(
    call_id: str,
    *,
    started_at: float | None = None,
    recording: str | None = None,
    mode: str = "triage",
    params: dict[str, Any] | None = None,
) -> list[CallEvent]:
    info = CallInfo(call_id=call_id, language="en", channel="websocket", mode=mode, params=params or {})  # type: ignore[arg-type]
    events: list[CallEvent] = [
        CallStarted(call_id, info, started_at or time.time()),
        StateChanged(call_id, "listening"),
    ]
    for i, (speaker, text) in enumerate(TRIAGE_TURNS):
        if speaker == "caller":
            events.append(PartialTranscript(call_id, text[:10]))
        events.append(TurnRecorded(call_id, turn(i, speaker, text)))
        if i == 3:
            events.append(ActionTaken(call_id, Escalate("chest pain with sweating", ("chest_pain_radiating",))))
            events.append(ActionTaken(call_id, Outcome(Progress("triage", "emergency_ambulance"))))
    events.append(CallEnded(call_id, "completed", triage_result(), recording))
    return events


def quiet_call(
    call_id: str,
    disposition: str,
    *,
    department: str = "General practice",
    started_at: float | None = None,
    mode: str = "triage",
    campaign: str | None = None,
) -> list[CallEvent]:
    params = {"campaign_id": campaign} if campaign else {}
    info = CallInfo(call_id=call_id, language="zh", channel="sip", mode=mode, params=params)  # type: ignore[arg-type]
    return [
        CallStarted(call_id, info, started_at or time.time()),
        TurnRecorded(call_id, turn(0, "bot", "您好，这里是 CareCall。")),
        TurnRecorded(call_id, turn(1, "caller", "我有点咳嗽")),
        CallEnded(
            call_id,
            "completed",
            CallResult(
                mode="followup" if mode == "followup" else "triage",
                disposition=disposition,
                department=department,
                chief_complaint="cough",
            ),
        ),
    ]


def write_stereo_wav(path: Path, seconds: float = 10.0, rate: int = 16000) -> Path:
    """A quiet stereo WAV (caller left, bot right) long enough to seek in."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    left = (0.1 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    right = (0.1 * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.stack([left, right], axis=1).tobytes())
    return path
