"""Issue 10 #5 against the real SIP endpoint over loopback UDP: a burst of INVITEs gets at most
capacity × 200 OK and leaves no state behind, SIP only from allowed sources, no RTP latching from
strangers (`c=0.0.0.0` included), a bad CSeq gives a 400 and one log line, OPTIONS says 503 while the
worker is not ready, and a real SIPp call still goes through after the flood."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from pathlib import Path

import pytest

from telephony.sip.endpoint import SipConfig, SipEndpoint
from telephony.sip.rtp import RtpPacket, build_rtp, parse_rtp
from tests.telephony.conftest import CallRecord, EchoHub, free_port, next_event, tone
from tests.telephony.peers import HAVE_SIPP, run_sipp, scenario, ulaw_file
from tests.telephony.test_sip import media_port, rtp_range
from voice.events import CallerHangup

pytestmark = [pytest.mark.sip]


# --- a raw UDP SIP peer ---------------------------------------------------------------------------
class RawPeer(asyncio.DatagramProtocol):
    """Sends hand-made SIP and collects every response, by Call-ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.responses: list[str] = []
        self.final: dict[str, int] = {}  # Call-ID → the first final status seen
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        text = data.decode(errors="replace")
        self.responses.append(text)
        if text.startswith("SIP/2.0 "):
            status = int(text.split()[1])
            call_id = header(text, "Call-ID")
            if status >= 200 and call_id not in self.final:
                self.final[call_id] = status
        self.got.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send(self, text: str, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), dest)

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
        async def loop() -> None:
            while not predicate():
                self.got.clear()
                await self.got.wait()
        await asyncio.wait_for(loop(), timeout)


def header(msg: str, name: str) -> str:
    for line in msg.split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


async def raw_peer(host: str = "127.0.0.1") -> RawPeer:
    _, proto = await asyncio.get_running_loop().create_datagram_endpoint(RawPeer, local_addr=(host, 0))
    return proto


def invite(peer_host: str, peer_port: int, call_id: str, *, rtp: tuple[str, int] = ("127.0.0.1", 40000),
           cseq: str = "1 INVITE", branch: str | None = None, extra: str = "") -> str:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {rtp[0]}\r\ns=-\r\nc=IN IP4 {rtp[0]}\r\nt=0 0\r\n"
           f"m=audio {rtp[1]} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
           "a=sendrecv\r\n")
    return (f"INVITE sip:en@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {peer_host}:{peer_port};branch={branch or 'z9hG4bK' + uuid.uuid4().hex[:16]}\r\n"
            f"From: <sip:caller@{peer_host}>;tag={uuid.uuid4().hex[:8]}\r\nTo: <sip:en@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:caller@{peer_host}:{peer_port}>\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")


def options(peer_host: str, peer_port: int, call_id: str) -> str:
    return (f"OPTIONS sip:carecall@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {peer_host}:{peer_port};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:probe@{peer_host}>;tag=p1\r\nTo: <sip:carecall@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


async def flood(peer: RawPeer, dest: tuple[str, int], ids: list[str]) -> None:
    """One INVITE per Call-ID, 50 in flight at a time (what a default socket buffer holds; the endpoint
    shares this loop and reads one datagram per turn), until each has its final answer."""
    for start in range(0, len(ids), 50):
        chunk = ids[start:start + 50]
        for i, call_id in enumerate(chunk):
            peer.send(invite("127.0.0.1", peer.port, call_id), dest)
            if i % 10 == 9:
                await asyncio.sleep(0)
        await peer.wait_for(lambda chunk=chunk: all(c in peer.final for c in chunk), timeout=30)


async def until_hangup(rec: CallRecord) -> None:
    while not isinstance(await next_event(rec), CallerHangup):
        pass


async def started(hub: EchoHub, **cfg: object) -> SipEndpoint:
    ep = SipEndpoint(SipConfig(port=0, rtp_ports=rtp_range(), **cfg), get_hub=lambda: hub)  # type: ignore[arg-type]
    await ep.start()
    return ep


def sip_state(ep: SipEndpoint) -> int:
    """Everything aiosipua keeps per call or transaction."""
    assert ep.uas is not None
    return len(ep.uas._calls) + len(ep.uas.transactions._server) + len(ep.uas.transactions._client)


# --- the tests ------------------------------------------------------------------------------------
async def test_a_burst_of_invites_gets_at_most_capacity_answers_and_leaves_no_state() -> None:
    hub = EchoHub(until_hangup, max_calls=2)
    ep = await started(hub)
    ep.refused.limit = 600  # the refusal memory is bounded: show it with a small bound
    peer = await raw_peer()
    dest = ep.local_addr
    try:
        for burst in range(2):
            ids = [f"flood{burst}-{i}" for i in range(1000)]
            await flood(peer, dest, ids)
            statuses = [peer.final[c] for c in ids]
            answered = statuses.count(200)
            assert answered <= 2, f"burst {burst}: {answered} × 200 OK for 2 lines"
            assert statuses.count(486) + answered == 1000, sorted(set(statuses))
            # the refused INVITEs left nothing in aiosipua; only the answered calls live there
            assert len(ep.uas._calls) <= 2 and sip_state(ep) <= 6, sip_state(ep)
            assert len(ep.refused) <= 600
            if burst == 0:
                assert answered == 2  # the first burst took both lines
                first_state = sip_state(ep)
        assert sip_state(ep) <= first_state  # the second burst added nothing
        readiness = hub.readiness()
        assert readiness.active == 2 and not readiness.ready
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]


async def test_a_retransmitted_refused_invite_gets_the_same_answer_and_its_ack_is_absorbed() -> None:
    hub = EchoHub(until_hangup, max_calls=0)  # every line taken
    ep = await started(hub)
    peer = await raw_peer()
    msg = invite("127.0.0.1", peer.port, "retx-1", branch="z9hG4bKretx1")
    try:
        peer.send(msg, ep.local_addr)
        await peer.wait_for(lambda: "retx-1" in peer.final)
        hub.max_calls = 5  # a line frees up: the retransmission must still be the same refusal
        peer.send(msg, ep.local_addr)
        await peer.wait_for(lambda: sum(r.startswith("SIP/2.0 486") for r in peer.responses) == 2)
        ack = msg.replace("INVITE sip:", "ACK sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        peer.send(ack.split("\r\n\r\n")[0] + "\r\n\r\n", ep.local_addr)
        peer.send(options("127.0.0.1", peer.port, "opt-after-ack"), ep.local_addr)  # an event to wait on
        await peer.wait_for(lambda: any("opt-after-ack" in r for r in peer.responses))
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]
    assert hub.calls == [] and sip_state(ep) == 0
    assert not any(r.startswith("SIP/2.0 200") and "retx-1" in r for r in peer.responses)


async def test_an_unsupported_language_or_mode_is_refused_by_admission_and_leaves_nothing() -> None:
    """SIP is admitted like every other entry point (voice.admission.admit): a language or mode CareCall
    does not have gets a 400, never a call in another language, and takes no line."""
    hub = EchoHub(until_hangup, max_calls=2)
    ep = await started(hub)
    peer = await raw_peer()
    asks = {"lang-fr": "X-CareCall-Language: fr\r\n", "mode-x": "X-CareCall-Mode: diagnose\r\n"}
    try:
        for call_id, extra in asks.items():
            peer.send(invite("127.0.0.1", peer.port, call_id, extra=extra), ep.local_addr)
        await peer.wait_for(lambda: all(c in peer.final for c in asks))
        assert all(peer.final[c] == 400 for c in asks), peer.final
        reasons = {header(r, "Call-ID"): r.split("\r\n")[0] for r in peer.responses if r.startswith("SIP/2.0 400")}
        assert reasons["lang-fr"].endswith("Unsupported Language") and reasons["mode-x"].endswith("Unsupported Mode")
        readiness = hub.readiness()
        assert readiness.active == 0 and readiness.ready  # no line was taken for them
        assert hub.calls == [] and sip_state(ep) == 0
        # a supported header wins over the request-URI's language (sip:en@...)
        peer.send(invite("127.0.0.1", peer.port, "lang-zh", extra="X-CareCall-Language: zh\r\n"), ep.local_addr)
        await hub.wait_started(1)
        assert hub.calls[0].info.language == "zh" and hub.calls[0].info.params["sip_call_id"] == "lang-zh"
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]


async def test_sip_from_a_source_outside_the_allow_list_gets_no_answer(caplog) -> None:
    caplog.set_level(logging.WARNING)
    hub = EchoHub(until_hangup)
    ep = await started(hub, allowed_sources=("127.0.0.2/32",))  # the "trunk"
    stranger, trunk = await raw_peer("127.0.0.1"), await raw_peer("127.0.0.2")
    try:
        for i in range(20):
            stranger.send(invite("127.0.0.1", stranger.port, f"stranger-{i}"), ep.local_addr)
            stranger.send(options("127.0.0.1", stranger.port, f"sopt-{i}"), ep.local_addr)
        trunk.send(options("127.0.0.2", trunk.port, "topt"), ep.local_addr)
        await trunk.wait_for(lambda: any("topt" in r for r in trunk.responses))
        trunk.send(invite("127.0.0.2", trunk.port, "from-trunk", rtp=("127.0.0.2", 40000)), ep.local_addr)
        await trunk.wait_for(lambda: "from-trunk" in trunk.final)
    finally:
        await ep.stop()
        stranger.transport.close()  # type: ignore[union-attr]
        trunk.transport.close()  # type: ignore[union-attr]
    assert stranger.responses == []  # not a 403 either: nothing to reflect, nothing stored
    assert ep.sources.refused == 40
    assert trunk.final["from-trunk"] == 200 and len(hub.calls) == 1
    lines = [r for r in caplog.records if "not an allowed source" in r.getMessage()]
    assert len(lines) == 1  # one line per source per minute, however many it sends


async def test_the_default_allow_list_is_loopback_and_the_trunk() -> None:
    ep = SipEndpoint(SipConfig(trunk="192.0.2.10:5060"), get_hub=lambda: None)
    assert ep.sources.allows("127.0.0.1") and ep.sources.allows("::1") and ep.sources.allows("192.0.2.10")
    assert not ep.sources.allows("192.0.2.11") and not ep.sources.allows("10.1.2.3")
    with pytest.raises(ValueError, match="not an address or CIDR"):
        SipEndpoint(SipConfig(allowed_sources=("10.0.0.0/33",)), get_hub=lambda: None)


async def talk(rec: CallRecord) -> None:
    """The bot talks until the caller hangs up (so there is audio a stranger could try to capture)."""
    t = rec.transport

    async def speak() -> None:
        while True:  # send_audio queues for the pacer and returns: keep about 0.5 s queued
            await t.send_audio(tone(300, 0.5, t.input_rate))
            await asyncio.sleep(0.4)

    task = asyncio.create_task(speak())
    try:
        await until_hangup(rec)
    finally:
        task.cancel()


def _our_rtp_port(ep: SipEndpoint) -> int:
    (session,) = ep.sessions.values()
    return session.rtp.local_port


async def _rtp_socket(host: str) -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s, s.getsockname()[1]


async def _received_rtp(s: socket.socket, seconds: float) -> int:
    """How many RTP packets arrive on `s` within `seconds` (the bot sends 50 a second when it may)."""
    loop = asyncio.get_running_loop()
    n = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                data = await loop.sock_recv(s, 2000)
                n += parse_rtp(data) is not None
    return n


@pytest.mark.parametrize("policy", ["sdp", "signalling"])
async def test_a_stranger_cannot_latch_onto_a_call_held_with_c_0_0_0_0(policy: str) -> None:
    hub = EchoHub(talk)
    ep = await started(hub, rtp_latching=policy)
    peer = await raw_peer("127.0.0.1")
    stranger, _ = await _rtp_socket("127.0.0.9")  # another host on the loopback net
    caller, _ = await _rtp_socket("127.0.0.1")  # the SIP peer's own host
    try:
        peer.send(invite("127.0.0.1", peer.port, "held-1", rtp=("0.0.0.0", 0)), ep.local_addr)
        await peer.wait_for(lambda: peer.final.get("held-1") == 200)
        await hub.wait_started(1)
        port = _our_rtp_port(ep)
        pkt = build_rtp(RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160))
        for _ in range(5):
            stranger.sendto(pkt, ("127.0.0.1", port))
        assert await _received_rtp(stranger, 1.0) == 0  # the bot's audio never goes to the stranger
        (session,) = ep.sessions.values()
        assert session.rtp.remote is None
        if policy == "signalling":  # symmetric RTP, only from the SIP peer's host
            assert session.rtp.dropped_source == 5
            caller.sendto(pkt, ("127.0.0.1", port))
            assert await _received_rtp(caller, 1.0) > 10
            assert session.rtp.remote == ("127.0.0.1", caller.getsockname()[1])
    finally:
        await ep.stop()
        for s in (stranger, caller):
            s.close()
        peer.transport.close()  # type: ignore[union-attr]


async def test_rtp_from_anyone_but_the_sdp_address_is_dropped() -> None:
    hub = EchoHub(talk)
    ep = await started(hub)
    peer = await raw_peer("127.0.0.1")
    media, media_port_ = await _rtp_socket("127.0.0.1")
    stranger, _ = await _rtp_socket("127.0.0.1")
    try:
        peer.send(invite("127.0.0.1", peer.port, "sdp-1", rtp=("127.0.0.1", media_port_)), ep.local_addr)
        await peer.wait_for(lambda: peer.final.get("sdp-1") == 200)
        await hub.wait_started(1)
        port = _our_rtp_port(ep)
        for i in range(5):
            stranger.sendto(build_rtp(RtpPacket(0, i, 160 * i, 7, b"\x00" * 160)), ("127.0.0.1", port))
        assert await _received_rtp(media, 1.0) > 10  # the SDP's address gets the bot
        assert await _received_rtp(stranger, 0.5) == 0
        (session,) = ep.sessions.values()
        assert session.rtp.dropped_source == 5 and session.rtp.remote == ("127.0.0.1", media_port_)
    finally:
        await ep.stop()
        media.close()
        stranger.close()
        peer.transport.close()  # type: ignore[union-attr]


async def test_a_bad_cseq_gets_a_400_and_one_log_line_without_a_traceback(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="carecall")
    hub = EchoHub(until_hangup)
    ep = await started(hub)
    peer = await raw_peer()
    bad = ["abc INVITE", "1", "99999999999 INVITE", "1 BYE", "-5 INVITE", "1 INVITE extra"]
    try:
        for i in range(200):
            peer.send(invite("127.0.0.1", peer.port, f"bad-cseq-{i}", cseq=bad[i % len(bad)]), ep.local_addr)
            await asyncio.sleep(0)  # the endpoint shares this loop and reads one datagram per turn
        await peer.wait_for(lambda: len(peer.final) == 200)
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]
    assert set(peer.final.values()) == {400}
    assert hub.calls == [] and sip_state(ep) == 0 and ep.bad_cseq == 200
    assert len([r for r in caplog.records if "CSeq" in r.getMessage()]) == 1
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text


async def test_options_says_503_while_not_ready_and_200_when_ready() -> None:
    hub = EchoHub(until_hangup, max_calls=1)
    ep = await started(hub)
    peer = await raw_peer()

    async def probe(tag: str) -> int:
        peer.send(options("127.0.0.1", peer.port, tag), ep.local_addr)
        await peer.wait_for(lambda: tag in peer.final)
        return peer.final[tag]

    try:
        assert await probe("o1") == 200
        peer.send(invite("127.0.0.1", peer.port, "fill-1"), ep.local_addr)
        await peer.wait_for(lambda: "fill-1" in peer.final)
        assert await probe("o2") == 503  # at capacity: the dispatcher should route around us
        hub.max_calls = 2
        assert await probe("o3") == 200
        hub.begin_drain()
        assert await probe("o4") == 503
        peer.send(invite("127.0.0.1", peer.port, "while-draining"), ep.local_addr)
        await peer.wait_for(lambda: "while-draining" in peer.final)
        assert peer.final["while-draining"] == 503
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]
    refusal = next(r for r in peer.responses if "while-draining" in r and r.startswith("SIP/2.0 503"))
    assert header(refusal, "Retry-After") == "5"


@pytest.mark.skipif(not HAVE_SIPP, reason="needs sipp")
async def test_a_real_sipp_call_goes_through_after_a_flood(tmp_path: Path) -> None:
    hub = EchoHub(max_calls=1)
    ep = await started(hub)
    peer = await raw_peer()
    try:
        ids = [f"pre-{i}" for i in range(300)]
        await flood(peer, ep.local_addr, ids)
        (taken,) = [c for c in ids if peer.final[c] == 200]
        ok = next(r for r in peer.responses if r.startswith("SIP/2.0 200") and taken in r)
        bye = (f"BYE sip:en@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKbye1\r\n"
               f"From: {header(ok, 'From')}\r\nTo: {header(ok, 'To')}\r\nCall-ID: {taken}\r\nCSeq: 2 BYE\r\n"
               "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        peer.send(bye, ep.local_addr)  # the flood's one call ends: the line is free again
        await peer.wait_for(lambda: any(r.startswith("SIP/2.0 200") and "2 BYE" in r for r in peer.responses))
        await hub.wait_idle()
        speech = ulaw_file(tone(440, 1.0, 8000).samples, tmp_path / "s.ulaw")
        sc = scenario("uac_speech.xml", tmp_path, speech=str(speech), talk_ms="1500")
        run = await run_sipp(f"127.0.0.1:{ep.local_addr[1]}", sc, sip_port=free_port(socket.SOCK_DGRAM),
                             media_port=media_port(), keys={"lang": "en"})
    finally:
        await ep.stop()
        peer.transport.close()  # type: ignore[union-attr]
    assert run.ok, run.output[-2000:]
    assert len(hub.calls) == 2 and len(hub.calls[1].caller_audio) > 7000  # 1 s at 8 kHz: only the call loop resamples
    assert sip_state(ep) == 0
