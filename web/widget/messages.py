"""Call events as the JSON messages the widget reads: the lead's wire format (voice/wire.py, README
"WebSocket call protocol"), the same on the WebRTC data channel as on /ws/call, so the browser
handles both one way. The widget's additions: the emergency number on `red_flag` (the server decides
which number a caller is told to dial) and a few transport messages of its own."""

from __future__ import annotations

import json
from typing import Any

from voice.events import CallerHangup, CallEvent, Dtmf
from voice.wire import event_to_json, loads

MAX_CLIENT_MESSAGE = 4096  # the longest real data-channel message is ~40 bytes
DTMF_DIGITS = frozenset("0123456789*#")


def event_message(event: CallEvent, *, emergency_number: str) -> dict[str, Any] | None:
    """The message for the caller's client, or None when the event is not for the caller."""
    message = event_to_json(event)
    if message is not None and message.get("type") in ("red_flag", "ended"):
        message.setdefault("emergency_number", emergency_number)
    return message


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_client_message(message: object) -> Dtmf | CallerHangup | None:
    """A data-channel message from the browser as an inbound event, strictly: a JSON object with a
    string `type`; `dtmf` carries one digit as a string. Anything else is None (ignored): the
    channel is the caller's own, and a bad message must never end the call."""
    if not isinstance(message, str) or len(message) > MAX_CLIENT_MESSAGE:
        return None
    try:
        data = loads(message)  # bounded nesting, finite numbers
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    kind = data["type"]
    if kind in ("end", "hangup"):
        return CallerHangup("caller hung up")
    digit = data.get("digit")
    if kind == "dtmf" and isinstance(digit, str) and len(digit) == 1 and digit in DTMF_DIGITS:
        return Dtmf(digit)
    return None
