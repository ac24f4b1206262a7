"""The seam between the phone transport and a carrier's media protocol (a `CarrierCodec`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voice.audio import Pcm


class CarrierProtocolError(ValueError):
    """An inbound message the codec refuses; `key` groups repeats so each kind is logged once."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class StreamStart:
    stream_id: str  # the carrier's id of this media stream (Twilio streamSid)
    carrier_call_id: str  # the carrier's id of the phone call (Twilio callSid)
    params: dict[str, str] = field(default_factory=dict)  # custom parameters from our TwiML / call setup


@dataclass(frozen=True, slots=True)
class MediaIn:
    samples: np.ndarray  # int16 at the codec's sample_rate


@dataclass(frozen=True, slots=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True, slots=True)
class MarkIn:
    name: str  # the far end played everything before this mark (or it was cleared)


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


CarrierMessage = MediaIn | DtmfIn | MarkIn | StreamStop


class CarrierCodec(Protocol):
    name: str
    sample_rate: int  # of the audio on the wire (8000 for G.711)

    def parse_start(self, msg: Mapping[str, Any]) -> StreamStart | None:
        """The stream's start message, or None for a message that may precede it (`connected`).
        Raises CarrierProtocolError for a start that cannot be served."""
        ...

    def decode(self, msg: Mapping[str, Any]) -> CarrierMessage | None:
        """One inbound message after the start; None for one to ignore silently.
        Raises CarrierProtocolError for malformed ones (logged once per key, never fatal)."""
        ...

    def media(self, frame: Pcm) -> str:
        """One outbound frame of bot audio as a wire message."""
        ...

    def mark(self, name: str) -> str | None:
        """A playback marker after the audio sent so far (None: the carrier has none)."""
        ...

    def clear(self) -> str | None:
        """Drop the audio the carrier holds (barge-in); None: the carrier cannot."""
        ...
