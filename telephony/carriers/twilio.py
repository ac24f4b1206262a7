"""Twilio Media Streams as a carrier codec (Twilio docs, "Media Streams - WebSocket Messages").

The carrier sends `connected`, `start` (accountSid, callSid, streamSid, customParameters,
mediaFormat), `media` every 20 ms (base64 μ-law, 8 kHz), `dtmf`, `mark` (the echo of ours once the
audio before it has played, or at once after `clear`) and finally `stop`. We send `media`, `mark`
after each piece of bot audio, and `clear` on barge-in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from telephony.carriers.base import (
    CarrierMessage,
    CarrierProtocolError,
    DtmfIn,
    MarkIn,
    MediaIn,
    StreamStart,
    StreamStop,
)
from telephony.common import int_or_none
from voice import g711
from voice.audio import Pcm

MAX_PAYLOAD_BYTES = 8000  # one second of μ-law in one media message is already far beyond Twilio's 20 ms
DTMF_DIGITS = set("0123456789*#ABCD")


class TwilioCodec:
    name = "twilio"
    sample_rate = g711.SAMPLE_RATE

    def __init__(self) -> None:
        self.stream_sid = ""
        self._last_seq = 0

    def parse_start(self, msg: Mapping[str, Any]) -> StreamStart | None:
        event = msg.get("event")
        if event == "connected":
            return None
        if event != "start":
            raise CarrierProtocolError("before-start", f"ignoring {str(event)[:32]!r} before start")
        start = msg.get("start")
        if not isinstance(start, dict):
            raise CarrierProtocolError("start", "malformed start message")
        sid = msg.get("streamSid") or start.get("streamSid")
        if not isinstance(sid, str) or not sid:
            raise CarrierProtocolError("start", "malformed start message")
        fmt = start.get("mediaFormat") or {}
        if isinstance(fmt, dict) and fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw":
            raise CarrierProtocolError("encoding", f"unsupported encoding {str(fmt.get('encoding'))[:32]!r}")
        custom = start.get("customParameters") or {}
        params = {str(k)[:64]: str(v)[:2048] for k, v in custom.items()} if isinstance(custom, dict) else {}
        self.stream_sid = sid[:64]
        return StreamStart(self.stream_sid, str(start.get("callSid", ""))[:64], params)

    def decode(self, msg: Mapping[str, Any]) -> CarrierMessage | None:
        event = msg.get("event")
        if event in ("media", "dtmf", "mark", "stop") and msg.get("streamSid") != self.stream_sid:
            raise CarrierProtocolError("sid", f"ignoring {event} with a wrong streamSid")
        seq = int_or_none(msg.get("sequenceNumber"))
        if seq is not None:
            if seq <= self._last_seq:
                raise CarrierProtocolError("seq", f"ignoring out-of-order/duplicate message (seq {seq} after "
                                                  f"{self._last_seq})")
            self._last_seq = seq
        if event == "media":
            return self._media(msg.get("media"))
        if event == "dtmf":
            dtmf = msg.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
            if isinstance(digit, str) and len(digit) == 1 and digit.upper() in DTMF_DIGITS:
                return DtmfIn(digit.upper())
            raise CarrierProtocolError("dtmf", "ignoring a malformed dtmf message")
        if event == "mark":
            mark = msg.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if isinstance(name, str):
                return MarkIn(name)
            raise CarrierProtocolError("mark", "ignoring a malformed mark message")
        if event == "stop":
            return StreamStop()
        if event in ("connected", "start"):
            raise CarrierProtocolError(f"dup-{event}", f"ignoring a second {event!r} message")
        raise CarrierProtocolError(f"unknown-{str(event)[:32]}", f"ignoring unknown event {str(event)[:32]!r}")

    @staticmethod
    def _media(media: Any) -> MediaIn | None:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            raise CarrierProtocolError("media-shape", "ignoring a media message without a payload")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            raise CarrierProtocolError("track", f"ignoring media on track {str(track)[:16]!r}")
        payload = media["payload"]
        if len(payload) > (MAX_PAYLOAD_BYTES * 4) // 3 + 4:
            raise CarrierProtocolError("oversize", f"ignoring an oversized media payload ({len(payload)} chars)")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise CarrierProtocolError("b64", "ignoring a media payload that is not base64") from None
        return MediaIn(g711.ulaw_decode(data)) if data else None

    def media(self, frame: Pcm) -> str:
        payload = base64.b64encode(g711.ulaw_encode(frame.samples)).decode("ascii")
        return json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}},
                          separators=(",", ":"))

    def mark(self, name: str) -> str | None:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}},
                          separators=(",", ":"))

    def clear(self) -> str | None:
        return json.dumps({"event": "clear", "streamSid": self.stream_sid}, separators=(",", ":"))
