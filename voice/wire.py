"""Call events as JSON for the caller's client (WebSocket text frames, WebRTC data channel).
One format for every client, documented in the README."""

from __future__ import annotations

import dataclasses
from typing import Any

from voice.conversation import Escalate, Outcome, Transfer
from voice.events import (
    ActionTaken,
    CallEnded,
    CallEvent,
    PartialTranscript,
    StateChanged,
    TurnRecorded,
)


def event_to_json(event: CallEvent, *, emergency_number: str | None = None) -> dict[str, Any] | None:
    """The client-facing form of an event, or None for events clients don't get. A red flag carries
    the emergency number to show (120 / 911, from the settings)."""
    if isinstance(event, StateChanged):
        return {"type": "state", "state": event.state}
    if isinstance(event, PartialTranscript):
        return {"type": "partial", "text": event.text}
    if isinstance(event, TurnRecorded):
        t = event.turn
        return {
            "type": "transcript",
            "turn": t.index,
            "speaker": t.speaker,
            "text": t.text,
            "start_s": t.start_s,
            "end_s": t.end_s,
            "interrupted": t.interrupted,
            "heard_text": t.heard_text,
            "metrics": dataclasses.asdict(t.metrics) if t.metrics else None,
            **({"protected": True} if t.protected else {}),  # safety advice, finished or repeated
        }
    if isinstance(event, ActionTaken):
        a = event.action
        if isinstance(a, Escalate):
            msg = {"type": "red_flag", "reason": a.reason, "red_flags": list(a.red_flags), "level": a.level}
            if emergency_number:
                msg["emergency_number"] = emergency_number
            return msg
        if isinstance(a, Outcome):
            return {"type": "outcome", **a.data}
        if isinstance(a, Transfer):
            return {"type": "transfer", "reason": a.reason}
        return None
    if isinstance(event, CallEnded):
        return {"type": "ended", "reason": event.reason, "result": event.result}
    return None
