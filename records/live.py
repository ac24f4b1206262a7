"""The console's live view of calls in progress: an in-memory picture of each live call and a
queue per console viewer. Nothing here touches the database; red flags go out the moment they
are raised."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from voice.events import (
    ActionTaken,
    CallEnded,
    CallEvent,
    CallStarted,
    PartialTranscript,
    StateChanged,
    TurnRecorded,
)

MAX_LIVE_TURNS = 200


@dataclass
class LiveCall:
    call_id: str
    language: str
    mode: str
    channel: str
    started_at: float
    state: str = "connecting"
    partial: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)
    red_flags: list[str] = field(default_factory=list)
    disposition: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "language": self.language,
            "mode": self.mode,
            "channel": self.channel,
            "started_at": self.started_at,
            "state": self.state,
            "partial": self.partial,
            "turns": list(self.turns),
            "red_flags": list(self.red_flags),
            "disposition": self.disposition,
        }


class LiveFeed:
    """Live calls and their subscribers. Call `apply(event)` from the event loop."""

    def __init__(self, queue_size: int = 500) -> None:
        self.calls: dict[str, LiveCall] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    # --- viewers ----------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in sorted(self.calls.values(), key=lambda c: c.started_at)]

    def _push(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a viewer that fell behind gets a fresh snapshot instead
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"type": "snapshot", "calls": self.snapshot()})
            queue.put_nowait(message)

    # --- events -----------------------------------------------------------------------------
    def _call(self, call_id: str) -> LiveCall:
        call = self.calls.get(call_id)
        if call is None:  # joined mid-call
            call = self.calls[call_id] = LiveCall(call_id, "", "triage", "", time.time())
        return call

    def apply(self, event: CallEvent) -> None:
        match event:
            case CallStarted(call_id=call_id, info=info, started_at=started_at):
                call = LiveCall(call_id, info.language, info.mode, info.channel, started_at)
                self.calls[call_id] = call
                self._push({"type": "call_started", "call": call.as_dict()})
            case StateChanged(call_id=call_id, state=state):
                self._call(call_id).state = state
                self._push({"type": "state", "call_id": call_id, "state": state})
            case PartialTranscript(call_id=call_id, text=text):
                self._call(call_id).partial = text
                self._push({"type": "partial", "call_id": call_id, "text": text})
            case TurnRecorded(call_id=call_id, turn=turn):
                call = self._call(call_id)
                call.partial = ""
                entry = {
                    "idx": turn.index,
                    "speaker": turn.speaker,
                    "text": turn.heard_text if turn.interrupted and turn.heard_text else turn.text,
                    "start_s": turn.start_s,
                    "interrupted": turn.interrupted,
                }
                call.turns.append(entry)
                del call.turns[:-MAX_LIVE_TURNS]
                self._push({"type": "turn", "call_id": call_id, "turn": entry})
            case ActionTaken(call_id=call_id, action=action):
                self._apply_action(call_id, action)
            case CallEnded(call_id=call_id, reason=reason):
                self.calls.pop(call_id, None)
                self._push({"type": "call_ended", "call_id": call_id, "reason": reason})

    def _apply_action(self, call_id: str, action: Any) -> None:
        kind = type(action).__name__
        call = self._call(call_id)
        if kind == "Escalate":
            flags = [str(f) for f in getattr(action, "red_flags", ())] or [str(getattr(action, "reason", ""))]
            call.red_flags.extend(f for f in flags if f not in call.red_flags)
            self._push(
                {
                    "type": "red_flag",
                    "call_id": call_id,
                    "flags": flags,
                    "reason": str(getattr(action, "reason", "")),
                    "level": str(getattr(action, "level", "")),
                }
            )
        elif kind == "Outcome":
            data = getattr(action, "data", {}) or {}
            disposition = data.get("disposition")
            if isinstance(disposition, str):
                call.disposition = disposition
                self._push({"type": "disposition", "call_id": call_id, "disposition": disposition})
