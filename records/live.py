"""The console's live view of calls in progress: an in-memory picture of each live call and a
queue per console viewer. Nothing here touches the database; red flags go out the moment they
are raised.

Other workers' calls (records/live_pg.py) are kept with the worker that sent them. Every worker
beats every `HEARTBEAT_S`; one not heard from for `WORKER_LOST_S` (any message counts) has died
(`kill -9`, a lost host) and its calls leave the view with a `call_ended` of reason `worker_lost`, so
that no nurse watches a call nobody carries. A call not heard of for `REMOTE_IDLE_S` goes too (reason
`no_news`): the backstop for a worker that is alive but never ended a call. `expire()` does this on
the feed's clock (injectable); the bridge runs it every second on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voice.conversation import Escalate, Outcome
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
# Defaults of Settings.live_heartbeat_s / live_worker_lost_s (settings.py): about four missed beats
HEARTBEAT_S = 5.0
WORKER_LOST_S = 20.0
REMOTE_IDLE_S = 900.0


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
    worker: str = ""  # the worker carrying the call (settings.worker_id): a console takeover is routed there

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
            "worker": self.worker,
        }


class LiveFeed:
    """Live calls and their subscribers. Call `apply(event)` (a local call's event) or
    `apply_message(message, sender=...)` (another worker's, see records/live_pg.py) from the event
    loop, `heard(sender)` for another worker's heartbeat and `expire()` now and then.
    `forward`, when set, receives every message made from a local event."""

    def __init__(self, queue_size: int = 500, remote_idle_s: float = REMOTE_IDLE_S, worker: str = "",
                 worker_lost_s: float = WORKER_LOST_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker  # this worker's id, stamped on the calls it starts
        self.calls: dict[str, LiveCall] = {}
        self.forward: Callable[[dict[str, Any]], None] | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self._clock = clock
        self._remote: dict[str, tuple[str, float]] = {}  # other workers' calls: call id -> (sender, last news)
        self._heard: dict[str, float] = {}  # sender -> last message of any kind
        self._beating: set[str] = set()  # senders heard beating: only those can be declared lost
        self._lost: dict[str, float] = {}  # senders declared lost -> when (forgotten after remote_idle_s)
        self._remote_idle_s = remote_idle_s
        self._worker_lost_s = worker_lost_s

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

    def owner(self, call_id: str) -> str | None:
        """The worker carrying a live call ("" when it was not named); None when the call is not live."""
        call = self.calls.get(call_id)
        return None if call is None else call.worker

    def local_calls(self) -> list[LiveCall]:
        """The calls this worker carries (not the ones other workers told it about)."""
        return [c for call_id, c in self.calls.items() if call_id not in self._remote]

    # --- other workers: who is alive --------------------------------------------------------
    def heard(self, sender: str, *, beat: bool = False) -> bool:
        """A message (or with `beat`, a heartbeat) from another worker. True when that worker had been
        declared lost: it is back (a network cut, not a crash), and only it knows which of its calls
        still go on, so the caller asks it (records/live_pg.py); nothing comes back here by itself."""
        self._heard[sender] = self._clock()
        if beat:
            self._beating.add(sender)
        return self._lost.pop(sender, None) is not None

    def expire(self) -> list[str]:
        """Drop the calls of lost workers and calls without news past the backstop; each viewer gets
        a `call_ended`. Returns the ids dropped."""
        now = self._clock()
        lost = {s for s in self._beating if now - self._heard.get(s, now) > self._worker_lost_s}
        for sender in lost:
            self._beating.discard(sender)
            self._lost[sender] = now
        gone: list[tuple[str, str]] = []
        for call_id, (sender, seen) in list(self._remote.items()):
            if sender in lost:
                gone.append((call_id, "worker_lost"))
            elif now - seen > self._remote_idle_s:
                gone.append((call_id, "no_news"))
        for call_id, _ in gone:  # the picture first, then the viewers (a full queue gets a fresh snapshot)
            self._remote.pop(call_id, None)
            self.calls.pop(call_id, None)
        for call_id, reason in gone:
            self._push({"type": "call_ended", "call_id": call_id, "reason": reason})
        # bounded: a restarted worker is a new sender; forget the old ones once nothing needs them
        carrying = {sender for sender, _ in self._remote.values()}
        for sender, at in list(self._heard.items()):
            if sender not in carrying and sender not in self._beating and now - at > self._remote_idle_s:
                del self._heard[sender]
        for sender, at in list(self._lost.items()):
            if now - at > self._remote_idle_s:
                del self._lost[sender]
        return [call_id for call_id, _ in gone]

    def _push(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a viewer that fell behind gets a fresh snapshot instead
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"type": "snapshot", "calls": self.snapshot()})
            queue.put_nowait(message)

    # --- events -----------------------------------------------------------------------------
    def apply(self, event: CallEvent) -> None:
        message = self.message_for(event)
        if message is None:
            return
        if message["type"] == "call_started":
            message["call"]["worker"] = self.worker
        self.apply_message(message)
        if self.forward is not None:
            self.forward(message)

    @staticmethod
    def message_for(event: CallEvent) -> dict[str, Any] | None:
        match event:
            case CallStarted(call_id=call_id, info=info, started_at=started_at):
                call = LiveCall(call_id, info.language, info.mode, info.channel, started_at)
                return {"type": "call_started", "call": call.as_dict()}
            case StateChanged(call_id=call_id, state=state):
                return {"type": "state", "call_id": call_id, "state": state}
            case PartialTranscript(call_id=call_id, text=text):
                return {"type": "partial", "call_id": call_id, "text": text}
            case TurnRecorded(call_id=call_id, turn=turn):
                entry = {
                    "idx": turn.index,
                    "speaker": turn.speaker,
                    "text": turn.heard_text if turn.interrupted and turn.heard_text else turn.text,
                    "start_s": turn.start_s,
                    "interrupted": turn.interrupted,
                }
                return {"type": "turn", "call_id": call_id, "turn": entry}
            case ActionTaken(call_id=call_id, action=action):
                if isinstance(action, Escalate):
                    flags = list(action.red_flags) or [action.reason]
                    return {
                        "type": "red_flag", "call_id": call_id, "flags": flags, "reason": action.reason,
                        "level": action.level,
                    }  # fmt: skip
                if isinstance(action, Outcome) and action.result.disposition:
                    disposition = action.result.disposition
                    return {"type": "disposition", "call_id": call_id, "disposition": disposition}
                return None
            case CallEnded(call_id=call_id, reason=reason):
                return {"type": "call_ended", "call_id": call_id, "reason": reason}
        return None

    def _call(self, call_id: str) -> LiveCall:
        call = self.calls.get(call_id)
        if call is None:  # joined mid-call
            call = self.calls[call_id] = LiveCall(call_id, "", "triage", "", time.time())
        return call

    def apply_message(self, message: dict[str, Any], *, sender: str | None = None) -> None:
        """Update the picture from one message and pass it to every viewer. `sender`: the other
        worker it came from (None: this worker's own call)."""
        kind = message.get("type")
        call_id = message.get("call_id") or (message.get("call") or {}).get("call_id")
        if not isinstance(call_id, str):
            return
        if sender is not None:
            self.heard(sender)
            if kind != "call_ended":
                self._remote[call_id] = (sender, self._clock())
        if kind == "call_started":  # a new call, or (records/live_pg.py) a call as it stands so far
            c = message["call"]
            self.calls[call_id] = LiveCall(
                call_id, c.get("language", ""), c.get("mode", "triage"), c.get("channel", ""),
                float(c.get("started_at") or time.time()), state=str(c.get("state") or "connecting"),
                partial=str(c.get("partial") or ""), turns=list(c.get("turns") or [])[-MAX_LIVE_TURNS:],
                red_flags=list(c.get("red_flags") or []), disposition=c.get("disposition"),
                worker=str(c.get("worker") or ""),
            )  # fmt: skip
        elif kind == "state":
            self._call(call_id).state = str(message.get("state", ""))
        elif kind == "partial":
            self._call(call_id).partial = str(message.get("text", ""))
        elif kind == "turn":
            call = self._call(call_id)
            call.partial = ""
            call.turns.append(message["turn"])
            del call.turns[:-MAX_LIVE_TURNS]
        elif kind == "red_flag":
            call = self._call(call_id)
            call.red_flags.extend(f for f in message.get("flags", []) if f not in call.red_flags)
        elif kind == "disposition":
            self._call(call_id).disposition = str(message.get("disposition", ""))
        elif kind == "call_ended":
            self.calls.pop(call_id, None)
            self._remote.pop(call_id, None)
        else:
            return
        self._push(message)
