"""The call protocol on the wire, both ways, for every client (WebSocket text frames, WebRTC data
channel; README "WebSocket call protocol").

Inbound: `loads` is the one JSON reader for everything a caller sends (bounded nesting, no
`NaN`/`Infinity`, no float that overflows), and `parse_start` checks the first message of a call
strictly: integers are integers (`16000.0` or `"16000"` is refused with a message that says so),
strings are strings. Outbound: `event_to_json` turns call events into the messages clients read."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
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

SAMPLE_RATES = (8000, 16000, 24000, 48000)
MAX_JSON_DEPTH = 32  # the deepest real message is 3 levels; 32 leaves room and stays far from recursion


class JsonInputError(ValueError):
    """Input that is not acceptable JSON; `code` names the problem for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(ValueError):
    """A call message that breaks the protocol; `code` is sent to the client with the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _no_constant(name: str) -> Any:
    raise JsonInputError("non_finite_number", f"{name} is not a number this service accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError("non_finite_number", f"{text[:20]} is out of range")
    return value


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion. Raises
    JsonInputError for a string that is not valid Unicode (a lone surrogate such as "\\ud800",
    which JSON can escape but no database, log or signer can encode)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            _valid_text(item)
            continue
        if isinstance(item, dict):
            for key in item:
                _valid_text(key)
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def _valid_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonInputError("bad_json", "a string is not valid Unicode (lone surrogate)") from None


def loads(text: str | bytes | bytearray, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads for untrusted input. Raises JsonInputError (a ValueError) for anything that is not
    JSON, for `NaN`/`Infinity`/`1e999`, for integers past Python's digit limit, and for nesting
    deeper than `max_depth` (never a RecursionError)."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError("too_deep", f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError("bad_json", f"not JSON: {exc.msg}") from None
    except (ValueError, UnicodeDecodeError, TypeError) as exc:  # e.g. an integer with 5,000 digits
        raise JsonInputError("bad_json", f"not acceptable JSON: {str(exc)[:80]}") from None
    if depth(value) > max_depth:
        raise JsonInputError("too_deep", f"JSON nested deeper than {max_depth} levels")
    return value


def _strict_int(name: str, value: Any, allowed: tuple[int, ...]) -> int:
    if type(value) is not int:  # bool is an int subclass; 16000.0 and "16000" are not integers
        raise ProtocolError("bad_sample_rate",
                            f"{name} must be an integer, one of {allowed}; got {type(value).__name__} {value!r:.40}")
    if value not in allowed:
        raise ProtocolError("bad_sample_rate", f"{name} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class StartRequest:
    language: object  # as sent: voice.admission validates it
    sample_rate: int
    output_sample_rate: int
    mode: object
    token: str | None
    params: dict[str, Any]  # what the caller sent; never trusted for records (server.py drops it)


def parse_start(raw: str | bytes | None) -> StartRequest:
    """Validate the first message of a call (strict types; ProtocolError with a code otherwise)."""
    if not isinstance(raw, str):
        raise ProtocolError("expected_start", "the first message must be a JSON 'start' message")
    try:
        msg = loads(raw)
    except JsonInputError as exc:
        raise ProtocolError(exc.code, str(exc)) from None
    if not isinstance(msg, dict) or msg.get("type") != "start":
        raise ProtocolError("expected_start", "the first message must be {\"type\": \"start\", ...}")
    language = msg.get("language")  # language and mode are checked by voice.admission (one place)
    rate = _strict_int("sample_rate", msg.get("sample_rate", 16000), SAMPLE_RATES)
    out_rate = _strict_int("output_sample_rate", msg.get("output_sample_rate", rate), SAMPLE_RATES)
    mode = msg.get("mode", "triage")
    token = msg.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("bad_token", "token must be a string")
    params = msg.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("bad_params", "params must be an object")
    return StartRequest(language, rate, out_rate, mode, token, params)


def _finite(value: Any) -> Any:
    """Outbound numbers clients can parse: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


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
            "start_s": _finite(t.start_s),
            "end_s": _finite(t.end_s),
            "interrupted": t.interrupted,
            "heard_text": t.heard_text,
            "metrics": _finite(dataclasses.asdict(t.metrics)) if t.metrics else None,
            **({"protected": True} if t.protected else {}),  # safety advice, finished or repeated
            **({} if event.stored else {"stored": False}),  # the record could not confirm it yet
        }
    if isinstance(event, ActionTaken):
        a = event.action
        if isinstance(a, Escalate):
            msg = {"type": "red_flag", "reason": a.reason, "red_flags": list(a.red_flags), "level": a.level}
            if emergency_number:
                msg["emergency_number"] = emergency_number
            return msg
        if isinstance(a, Outcome):
            return {"type": "outcome", **a.result.to_json()}
        if isinstance(a, Transfer):
            return {"type": "transfer", "reason": a.reason}
        return None
    if isinstance(event, CallEnded):
        return {"type": "ended", "reason": event.reason, "result": event.result.to_json()}
    return None
