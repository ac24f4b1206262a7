"""RTP pieces: packet format, the jitter buffer, RFC 4733 DTMF, and `RtpTransport` against a plain
UDP peer that misbehaves (reordering, duplicates, strangers, unnegotiated payload types)."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np

from telephony.sip.rtp import JitterBuffer, RtpPacket, build_rtp, dtmf_payload, open_rtp, parse_dtmf, parse_rtp
from telephony.sip.transport import RtpTransport
from tests.telephony.conftest import dominant_hz, tone
from voice import g711
from voice.events import CallerAudio, Dtmf


def pkt(seq: int, payload: bytes = b"\xff" * 160, pt: int = 0, ts: int | None = None, ssrc: int = 7) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, (seq * 160 if ts is None else ts) & 0xFFFFFFFF, ssrc, payload)


def test_packet_round_trip_and_rejects() -> None:
    p = RtpPacket(8, 65535, 4294967200, 0xDEADBEEF, b"abc", marker=True)
    assert parse_rtp(build_rtp(p)) == p
    assert parse_rtp(b"\x00" * 11) is None
    assert parse_rtp(b"\x40" + b"\x00" * 20) is None  # version 1
    # CSRC + header extension + padding are skipped
    raw = bytes([0xB1, 0x00]) + b"\x00\x01" + b"\x00" * 8 + b"\x00\x00\x00\x09" + b"\xbe\xde\x00\x01" + b"\x00" * 4
    raw += b"pay" + b"\x00\x02"
    parsed = parse_rtp(raw)
    assert parsed is not None and parsed.payload == b"pay"


def test_jitter_buffer_reorders_drops_duplicates_and_late_and_survives_wrap() -> None:
    jb = JitterBuffer(depth=4, max_wait_s=1.0)
    order = [65533, 65535, 65534, 0, 0, 2, 1, 65532]
    out = []
    for s in order:
        out += [p.seq for p, _ in jb.push(pkt(s), now=0.0)]
    assert out == [65533, 65534, 65535, 0, 1, 2]
    assert jb.late == 2 and jb.lost == 0  # a copy of a packet already handed out counts as late
    # a lost packet is given up on once the buffer is deep enough, and counted
    for s in (4, 5, 6, 7):
        out += [p.seq for p, _ in jb.push(pkt(s), now=0.0)]
    assert out[-4:] == [4, 5, 6, 7] and jb.lost == 1
    # or once the oldest waited long enough
    assert jb.push(pkt(9), now=0.0) == []
    assert [(p.seq, lost) for p, lost in jb.pop_ready(now=2.0)] == [(9, 1)]


def test_dtmf_payload() -> None:
    assert parse_dtmf(dtmf_payload("#", 800, True)) == ("#", True, 800)
    assert parse_dtmf(dtmf_payload("5", 160, False)) == ("5", False, 160)
    assert parse_dtmf(b"\x20\x00\x00\xa0") is None  # event 32 is not a DTMF digit


async def test_rtp_transport_against_a_misbehaving_peer(caplog) -> None:
    caplog.set_level(logging.WARNING)
    box: list[RtpTransport] = []
    rtp = await open_rtp("127.0.0.1", (33000, 33999), lambda p: box[0].on_packet(p))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.remote = peer.getsockname()
    rtp.payload_types = {0, 101}
    t = RtpTransport(call_id="u", rtp=rtp, codec=g711.G711("PCMU"), dtmf_pt=101, input_rate=16000)
    box.append(t)
    t.start()
    dest = ("127.0.0.1", rtp.local_port)
    try:
        audio = g711.ulaw_encode(tone(440, 0.4, 8000).samples)
        frames = [audio[i:i + 160] for i in range(0, len(audio), 160)]
        order = list(range(len(frames)))
        order[3], order[4] = order[4], order[3]  # reordered
        for i in order:
            peer.sendto(build_rtp(pkt(100 + i, frames[i])), dest)
            if i == 6:
                peer.sendto(build_rtp(pkt(100 + i, frames[i])), dest)  # duplicate
                stranger.sendto(build_rtp(pkt(500, b"\x00" * 160)), dest)  # someone else
                peer.sendto(build_rtp(pkt(900, b"\x00" * 160, pt=18)), dest)  # G.729: not negotiated
        for n in range(1, 4):  # one key press: continuation packets and three end packets
            peer.sendto(build_rtp(pkt(200 + n, dtmf_payload("7", n * 160, False), pt=101, ts=99999)), dest)
        for n in range(3):
            peer.sendto(build_rtp(pkt(204 + n, dtmf_payload("7", 480, True), pt=101, ts=99999)), dest)
        got: list[np.ndarray] = []
        digits: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30  # all of it was sent already: generous for a loaded machine
        while loop.time() < deadline and (sum(len(g) for g in got) < 0.4 * 8000 - 200 or not digits):
            ev = await asyncio.wait_for(t.receive(), max(0.1, deadline - loop.time()))
            if isinstance(ev, CallerAudio):
                got.append(ev.audio.samples)
            elif isinstance(ev, Dtmf):
                digits.append(ev.digit)
        await asyncio.sleep(0.1)  # a second "7" (the end packets repeat) would come now; none may
        while len(t.inbound):
            ev = await t.inbound.get()
            if isinstance(ev, Dtmf):
                digits.append(ev.digit)
        heard = np.concatenate(got)
        assert abs(dominant_hz(heard, 8000) - 440) < 10  # 8 kHz as on the wire: the call loop resamples
        assert t.jitter.late + t.jitter.duplicates == 1 and len(heard) <= 0.4 * 8000  # the copy was dropped
        assert digits == ["7"]
        assert rtp.dropped_source == 1 and rtp.dropped_pt == 1
        assert "unexpected source" in caplog.text and "payload type 18" in caplog.text

        # bot audio goes out in steady 20 ms packets; silence when idle; DTMF out as telephone-event
        await t.send_audio(tone(1000, 0.2, 8000))
        await t.send_dtmf("3")
        assert await t.wait_for_playout(30)  # every packet of both is on the wire
        received = []
        while True:
            try:
                received.append(parse_rtp(peer.recv(2000)))
            except BlockingIOError:
                break
        voice = [p for p in received if p.payload_type == 0 and p.payload != b"\xff" * 160]
        events = [p for p in received if p.payload_type == 101]
        assert len(voice) == 10 and voice[0].marker
        assert {parse_dtmf(p.payload)[0] for p in events} == {"3"} and parse_dtmf(events[-1].payload)[1]
        assert len({p.timestamp for p in events}) == 1
    finally:
        await t.aclose()
        peer.close()
        stranger.close()


