"""The one admission function every call entry point uses (/ws/call, the widget's WebRTC, Media
Streams, SIP in and out): validate what the caller asked for with a clear error, take a line on the
hub atomically (before the call is answered), make the call id and `CallInfo`, then run the call.

    with admit(hub, CallRequest("media-stream", language=custom.get("language"), ...)) as call:
        transport = ...(call.info.call_id)   # answer only now: the line is ours
        await call.run(transport)

A bad language is refused with `AdmissionRefused("bad_language", ...)`, never silently turned into
another one. The hub is reached through a small Protocol: a hub with `reserve()` (take the line,
then answer) is used that way; an older hub with only `has_capacity()` is checked instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from voice.events import CallInfo
from voice.languages import LANGUAGES
from voice.ports import Transport

log = logging.getLogger("carecall.admission")

MODES: tuple[str, ...] = ("triage", "followup")
CHANNELS: tuple[str, ...] = ("websocket", "webrtc", "media-stream", "sip")
MAX_PARAMS = 32
MAX_PARAM_CHARS = 256


class AdmissionRefused(Exception):
    """The call cannot be taken; `code` is machine-readable (bad_language, bad_mode, bad_params,
    bad_channel, busy), the message is for a person."""

    def __init__(self, code: str, message: str, *, at_capacity: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # busy because every line is in use (SIP: 486 Busy Here), not because the worker is starting,
        # draining or over its latency budget (503 Service Unavailable, try another worker)
        self.at_capacity = at_capacity

    @property
    def busy(self) -> bool:
        return self.code == "busy"


@runtime_checkable
class Hub(Protocol):
    """What admission needs of `voice.hub.CallHub` (either version)."""

    def has_capacity(self) -> bool: ...

    def new_call_id(self) -> str: ...

    async def run(self, *args: Any) -> dict[str, Any]: ...


class Line(Protocol):
    """A line taken on a hub before the call is answered."""

    def release(self) -> None: ...


@runtime_checkable
class ReservingHub(Protocol):
    """A hub that takes a line atomically: `reserve()` → a ticket, `run(ticket, info, transport)`."""

    def reserve(self, channel: str = "") -> Line: ...


def hub_of(state: object) -> Hub | None:
    """The call hub an app keeps in its state (`app.state.hub`), typed; None before start-up."""
    hub = getattr(state, "hub", None)
    return hub if isinstance(hub, Hub) else None


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What an entry point was asked for, as it came (validated by `admit`)."""

    channel: str
    language: object = None  # None: `default_language`
    mode: object = None  # None: triage
    params: Mapping[str, object] | None = None
    default_language: str | None = None  # a channel's configured default (SIP); else a language is required


def validate(request: CallRequest) -> tuple[str, Literal["triage", "followup"], dict[str, Any]]:
    """The request's language, mode and params, or `AdmissionRefused` with a clear reason."""
    if request.channel not in CHANNELS:
        raise AdmissionRefused("bad_channel", f"unknown channel {request.channel!r}")
    language = request.language if request.language not in (None, "") else request.default_language
    if not isinstance(language, str) or language not in LANGUAGES:
        shown = "nothing" if language is None else repr(language)[:40]
        raise AdmissionRefused("bad_language", f"language must be one of {', '.join(LANGUAGES)}, got {shown}")
    mode = request.mode if request.mode not in (None, "") else "triage"
    if not isinstance(mode, str) or mode not in MODES:
        raise AdmissionRefused("bad_mode", f"mode must be one of {', '.join(MODES)}, got {repr(mode)[:40]}")
    params = dict(request.params or {})
    if len(params) > MAX_PARAMS:
        raise AdmissionRefused("bad_params", f"at most {MAX_PARAMS} params")
    for key, value in params.items():
        if not isinstance(key, str) or len(key) > 64:
            raise AdmissionRefused("bad_params", "param names must be strings of at most 64 characters")
        if not isinstance(value, str | int | float | bool) or value is None:
            raise AdmissionRefused("bad_params", f"param {key[:64]!r} must be a string, number or boolean")
        if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
            raise AdmissionRefused("bad_params", f"param {key[:64]!r} is longer than {MAX_PARAM_CHARS} characters")
    return language, mode, params  # type: ignore[return-value]


@dataclass(eq=False)
class Admitted:
    """A call that has its line: run it (once) or release it."""

    hub: Hub
    info: CallInfo
    ticket: Line | None = None
    _done: bool = field(default=False, repr=False)

    async def run(self, transport: Transport) -> dict[str, Any]:
        if self._done:
            raise RuntimeError("this admission was already used")
        self._done = True
        if self.ticket is not None:
            return await self.hub.run(self.ticket, self.info, transport)
        return await self.hub.run(self.info, transport)

    def add_params(self, **params: str | int | float | bool) -> None:
        """What the entry point learnt while answering (the SIP Call-ID, the codec), added to the call's
        params; the caller's own params were validated by `admit`."""
        self.info = replace(self.info, params={**self.info.params, **params})

    def release(self) -> None:
        """Give the line back (the call was not answered after all); no-op once run."""
        if not self._done:
            self._done = True
            if self.ticket is not None:
                self.ticket.release()

    def __enter__(self) -> Admitted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def admit(hub: Hub | None, request: CallRequest, *, call_id: str | None = None) -> Admitted:
    """Validate, take a line (no await inside: atomic on the event loop), make the `CallInfo`."""
    language, mode, params = validate(request)
    if hub is None:
        raise AdmissionRefused("busy", "this worker is starting or stopping; try again shortly")
    ticket: Line | None = None
    if isinstance(hub, ReservingHub):
        try:
            ticket = hub.reserve(request.channel)
        except RuntimeError as exc:  # voice.hub.CallsBusy
            reason = str(getattr(exc, "reason", exc))
            raise AdmissionRefused("busy", f"all lines are busy ({reason})",
                                   at_capacity=reason.startswith("at capacity")) from None
    elif not hub.has_capacity():
        raise AdmissionRefused("busy", "all lines are busy, please try again shortly", at_capacity=True)
    info = CallInfo(call_id=call_id or hub.new_call_id(), language=language, channel=request.channel,
                    mode=mode, params=params)
    return Admitted(hub, info, ticket)
