"""Call events as the JSON messages the widget reads: the lead's wire format (voice/wire.py, README
"WebSocket call protocol"), the same on the WebRTC data channel as on /ws/call, so the browser
handles both one way. The widget's additions: the emergency number on `red_flag` (the server decides
which number a caller is told to dial) and a few transport messages of its own."""

from __future__ import annotations

import json
from typing import Any

from voice.events import CallEvent
from voice.wire import event_to_json


def event_message(event: CallEvent, *, emergency_number: str) -> dict[str, Any] | None:
    """The message for the caller's client, or None when the event is not for the caller."""
    message = event_to_json(event)
    if message is not None and message.get("type") in ("red_flag", "ended"):
        message.setdefault("emergency_number", emergency_number)
    return message


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
