"""RTP for G.711 calls (RFC 3550, RFC 3551, RFC 4733): packets, a reordering jitter buffer, DTMF
telephone-events, and a UDP session that accepts media only from the negotiated peer and payload
types."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telephony.common import LogOnce

log = logging.getLogger("carecall.telephony.rtp")

DTMF_EVENTS = "0123456789*#ABCD"
RTP_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False


def parse_rtp(data: bytes) -> RtpPacket | None:
    """None for anything that is not a well-formed RTP version 2 packet."""
    if len(data) < 12:
        return None
    b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    offset = 12 + 4 * (b0 & 0x0F)  # CSRC list
    if b0 & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        (length,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * length
    end = len(data)
    if b0 & 0x20:  # padding
        pad = data[-1]
        if pad == 0 or pad > end - offset:
            return None
        end -= pad
    if offset > end:
        return None
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))


def build_rtp(pkt: RtpPacket) -> bytes:
    return RTP_HEADER.pack(0x80, (0x80 if pkt.marker else 0) | pkt.payload_type, pkt.seq & 0xFFFF,
                           pkt.timestamp & 0xFFFFFFFF, pkt.ssrc) + pkt.payload


# --- RFC 4733 telephone-event -----------------------------------------------------------------
def parse_dtmf(payload: bytes) -> tuple[str, bool, int] | None:
    """(digit, end, duration) or None for events that are not DTMF digits."""
    if len(payload) < 4:
        return None
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DTMF_EVENTS):
        return None
    return DTMF_EVENTS[event], bool(flags & 0x80), duration


def dtmf_payload(digit: str, duration: int, end: bool, volume: int = 10) -> bytes:
    return struct.pack("!BBH", DTMF_EVENTS.index(digit.upper()), (0x80 if end else 0) | (volume & 0x3F), duration)


# --- jitter buffer ----------------------------------------------------------------------------
class JitterBuffer:
    """Reorders packets by (extended) sequence number and hands them out in order.

    A packet is released as soon as it is the next expected one; a gap is given up on once the
    buffer holds `depth` packets or the oldest has waited `max_wait_s`. Packets older than what was
    already released (late) and duplicates are dropped and counted."""

    def __init__(self, depth: int = 4, max_wait_s: float = 0.06) -> None:
        self.depth = depth
        self.max_wait_s = max_wait_s
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._next: int | None = None  # extended seq expected next
        self._highest: int | None = None
        self.late = 0
        self.duplicates = 0
        self.lost = 0

    def reset(self) -> None:
        self._held.clear()
        self._next = None
        self._highest = None

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + delta if delta < 0x8000 else self._highest - (0x10000 - delta)

    def push(self, pkt: RtpPacket, now: float | None = None) -> list[tuple[RtpPacket, int]]:
        """Returns packets ready in order, each with the number of packets lost just before it."""
        now = time.monotonic() if now is None else now
        ext = self._extend(pkt.seq)
        if self._next is None:
            self._next = ext
        if ext < self._next:
            self.late += 1
            return []
        if ext in self._held:
            self.duplicates += 1
            return []
        self._held[ext] = (pkt, now)
        self._highest = ext if self._highest is None else max(self._highest, ext)
        return self.pop_ready(now)

    def pop_ready(self, now: float | None = None) -> list[tuple[RtpPacket, int]]:
        now = time.monotonic() if now is None else now
        out: list[tuple[RtpPacket, int]] = []
        while self._held and self._next is not None:
            if self._next in self._held:
                out.append((self._held.pop(self._next)[0], 0))
                self._next += 1
                continue
            oldest = min(self._held)
            waited = now - self._held[oldest][1]
            if len(self._held) >= self.depth or waited >= self.max_wait_s:
                gap = oldest - self._next
                self.lost += gap
                out.append((self._held.pop(oldest)[0], gap))
                self._next = oldest + 1
                continue
            break
        return out


# --- the UDP session --------------------------------------------------------------------------
class RtpSession(asyncio.DatagramProtocol):
    """One call's RTP socket. Media from anyone but the negotiated peer, or with a payload type
    that was not negotiated, is dropped (logged once per kind)."""

    def __init__(self, *, on_packet: Callable[[RtpPacket], None], log_: Any = None) -> None:
        self._on_packet = on_packet
        self._once = LogOnce(log_ or log)
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0
        self.remote: tuple[str, int] | None = None
        self.latch = False  # accept the first source when the SDP address is unusable
        self.latch_hosts: frozenset[str] | None = None  # latch only to a source on one of these hosts
        self.payload_types: set[int] = set()
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.sending = True
        self.rx_packets = 0
        self.tx_packets = 0
        self.dropped_source = 0
        self.dropped_pt = 0
        self.early = 0

    # asyncio.DatagramProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (3.11's selector transport is not a subclass)
        self.local_port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        if self.remote is None:
            if not self.latch:
                self.early += 1  # media before the answer told us where it comes from
                return
            if self.latch_hosts is not None and source[0] not in self.latch_hosts:
                self.dropped_source += 1  # a stranger must not capture the call's audio
                self._once.warning("latch", "not latching RTP to %s:%d (not the SIP peer's host)", *source)
                return
            self.remote = source  # symmetric RTP: answer where the media comes from
        if source != self.remote:
            self.dropped_source += 1
            self._once.warning("src", "ignoring RTP from an unexpected source %s:%d", *source)
            return
        pkt = parse_rtp(data)
        if pkt is None:
            self._once.warning("bad", "ignoring a datagram that is not RTP (%d bytes)", len(data))
            return
        if pkt.payload_type not in self.payload_types:
            self.dropped_pt += 1
            self._once.warning(f"pt{pkt.payload_type}", "ignoring RTP with payload type %d (not negotiated)",
                               pkt.payload_type)
            return
        self.rx_packets += 1
        self._on_packet(pkt)

    def error_received(self, exc: Exception) -> None:
        self._once.warning("err", "RTP socket error: %s", exc)

    # sending
    def send(self, payload_type: int, payload: bytes, *, marker: bool = False, advance: bool = True,
             timestamp: int | None = None) -> None:
        if self.transport is None or self.remote is None or not self.sending:
            if advance:
                self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
            return
        ts = self.timestamp if timestamp is None else timestamp
        self.transport.sendto(build_rtp(RtpPacket(payload_type, self.seq, ts, self.ssrc, payload, marker)),
                              self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.tx_packets += 1
        if advance:
            self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def open_rtp(host: str, port_range: tuple[int, int], on_packet: Callable[[RtpPacket], None],
                   log_: Any = None) -> RtpSession:
    """Bind an even port in `port_range` (RTCP would take the odd one above it)."""
    loop = asyncio.get_running_loop()
    lo, hi = port_range
    candidates = list(range(lo + (lo % 2), hi, 2))
    random.shuffle(candidates)
    for port in candidates[:200]:
        try:
            _, proto = await loop.create_datagram_endpoint(
                lambda: RtpSession(on_packet=on_packet, log_=log_), local_addr=(host, port))
            return proto
        except OSError:
            continue
    raise OSError(f"no free RTP port in {lo}-{hi} on {host}")
