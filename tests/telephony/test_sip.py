"""The SIP endpoint against real peers: SIPp calling in with RTP audio, holding, cancelling and
being transferred, SIPp answering (or refusing) our outbound calls, and garbage on the wire. The
audio each side received is checked: ours in the call record, SIPp's captured off the loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
from pathlib import Path

import numpy as np
import pytest

from telephony.sip.endpoint import SipConfig, SipEndpoint
from tests.telephony.conftest import CallRecord, EchoHub, dominant_hz, free_port, next_event, tone
from tests.telephony.peers import (
    HAVE_BARESIP,
    HAVE_SIPP,
    HAVE_TCPDUMP,
    Capture,
    decode_stream,
    read_wav_samples,
    rms_dbfs,
    run_baresip,
    run_sipp,
    scenario,
    ulaw_file,
    until_listening,
)
from voice.events import CallerHangup

pytestmark = [pytest.mark.sip, pytest.mark.skipif(not (HAVE_SIPP and HAVE_TCPDUMP), reason="needs sipp and tcpdump")]


def media_port() -> int:
    while True:
        port = random.randrange(24000, 29000, 2)
        try:
            for p in (port, port + 1, port + 2, port + 3):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


def rtp_range() -> tuple[int, int]:
    lo = random.randrange(30000, 39000, 100)
    return lo, lo + 99


async def started(hub: EchoHub, **cfg: object) -> SipEndpoint:
    ep = SipEndpoint(SipConfig(port=0, rtp_ports=rtp_range(), **cfg), get_hub=lambda: hub)  # type: ignore[arg-type]
    await ep.start()
    return ep


def steady(packets: list, pt: int) -> np.ndarray:
    times = np.array([t for t, p in packets if p.payload_type == pt])
    return np.diff(times)


async def test_sipp_calls_in_speaks_and_hears_the_echo(tmp_path: Path) -> None:
    hub = EchoHub()
    ep = await started(hub)
    speech = tone(440, 2.0, 8000).samples
    sc = scenario("uac_speech.xml", tmp_path, speech=str(ulaw_file(speech, tmp_path / "speech.ulaw")),
                  talk_ms="3500")
    mp = media_port()
    try:
        with Capture(tmp_path / "to_sipp.pcap", mp) as cap:
            run = await run_sipp(f"127.0.0.1:{ep.local_addr[1]}", sc, sip_port=free_port(socket.SOCK_DGRAM),
                                 media_port=mp, keys={"lang": "en"})
            await asyncio.sleep(0.5)
    finally:
        await ep.stop()
    assert run.ok, run.output[-2000:]
    (rec,) = await hub.until_calls(1)
    assert rec.info.channel == "sip" and rec.info.language == "en" and rec.info.params["codec"] == "PCMU"
    assert "8613800001234" not in str(rec.info.params)  # the number is masked
    heard = rec.caller_audio  # what CareCall heard (16 kHz)
    assert abs(len(heard) / 8000 - 2.0) < 0.1 and abs(dominant_hz(heard, 8000) - 440) < 10  # 8 kHz: the loop resamples
    assert rec.hangup == "caller hung up"
    pkts = cap.packets()  # what SIPp received from CareCall
    audio = decode_stream(pkts, 0)
    assert len(audio) > 2.5 * 8000  # a continuous stream: echo plus silence between
    loud = audio[np.abs(audio.astype(np.int32)) > 1000]
    assert len(loud) > 1.5 * 8000 * 0.5 and abs(dominant_hz(audio, 8000) - 440) < 10
    gaps = steady(pkts, 0)
    # on the frame clock: 20 ms apart, no bursts, no drift (a loaded machine jitters single packets)
    assert np.median(gaps) == pytest.approx(0.02, abs=0.002) and np.percentile(gaps, 95) < 0.06
    assert gaps.mean() == pytest.approx(0.02, abs=0.002)
    seqs = [p.seq for _, p in pkts if p.payload_type == 0]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    ts = [p.timestamp for _, p in pkts if p.payload_type == 0]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(ts))


async def test_hold_stops_our_rtp_and_resume_restarts_it(tmp_path: Path) -> None:
    async def talk(rec: CallRecord) -> None:  # the bot talks the whole time
        t = rec.transport
        t.mark_turn()
        await t.send_audio(tone(500, 6.0, 8000))
        while not isinstance(await next_event(rec), CallerHangup):
            pass

    hub = EchoHub(talk)
    ep = await started(hub)
    sc = scenario("uac_hold.xml", tmp_path, speech=str(ulaw_file(tone(300, 0.5, 8000).samples, tmp_path / "s.ulaw")),
                  before_ms="1000", hold_ms="1500", after_ms="1000")
    mp = media_port()
    try:
        with Capture(tmp_path / "hold.pcap", mp) as cap:
            run = await run_sipp(f"127.0.0.1:{ep.local_addr[1]}", sc, sip_port=free_port(socket.SOCK_DGRAM),
                                 media_port=mp)
            await asyncio.sleep(0.3)
    finally:
        await ep.stop()
    assert run.ok, run.output[-2000:]
    (rec,) = await hub.until_calls(1)
    assert rec.info.params["codec"] == "PCMA"
    times = np.array([t for t, p in cap.packets() if p.payload_type == 8])
    gaps = np.diff(times)
    assert gaps.max() > 1.3, "no RTP from CareCall while it is held"
    # one pause as long as the hold (a loaded machine may delay a packet, never by most of a second)
    assert (gaps > 0.75).sum() == 1, "one pause only: sending resumed after the second re-INVITE"
    assert len(times) > 60


async def test_cancel_while_ringing_leaves_no_call(tmp_path: Path) -> None:
    hub = EchoHub()
    ep = await started(hub, answer_delay_s=2.0)
    sc = scenario("uac_cancel.xml", tmp_path)
    try:
        run = await run_sipp(f"127.0.0.1:{ep.local_addr[1]}", sc, sip_port=free_port(socket.SOCK_DGRAM),
                             media_port=media_port())
        await asyncio.sleep(2.5)
    finally:
        await ep.stop()
    assert run.ok, run.output[-2000:]
    assert hub.calls == [] and ep.sessions == {}


async def test_transfer_sends_refer_and_hangs_up_once_the_pbx_connected(tmp_path: Path) -> None:
    async def transfer(rec: CallRecord) -> None:
        t = rec.transport
        t.mark_turn()
        await t.send_audio(tone(600, 0.6, 8000))
        rec.notes["transferred"] = await t.transfer("sip:nurse@127.0.0.1:5099")
        while not isinstance(await next_event(rec), CallerHangup):
            pass

    hub = EchoHub(transfer)
    ep = await started(hub)
    sc = scenario("uac_refer.xml", tmp_path, speech=str(ulaw_file(tone(300, 0.5, 8000).samples, tmp_path / "s.ulaw")))
    try:
        run = await run_sipp(f"127.0.0.1:{ep.local_addr[1]}", sc, sip_port=free_port(socket.SOCK_DGRAM),
                             media_port=media_port(), timeout=20)
    finally:
        await ep.stop()
    assert run.ok, run.output[-3000:]
    (rec,) = await hub.until_calls(1)
    assert rec.notes["transferred"] is True


async def test_outbound_call_answered_by_sipp(tmp_path: Path) -> None:
    hub = EchoHub()
    ep = await started(hub)
    sip_port = free_port(socket.SOCK_DGRAM)
    mp = media_port()
    sc = scenario("uas_answer.xml", tmp_path, speech=str(ulaw_file(tone(700, 1.5, 8000).samples, tmp_path / "s.ulaw")),
                  talk_ms="3000")
    try:
        with Capture(tmp_path / "out.pcap", mp) as cap:
            sipp = asyncio.create_task(run_sipp(None, sc, sip_port=sip_port, media_port=mp, timeout=20))
            await until_listening(sip_port)
            result = await ep.dial(f"sip:+8613900001111@127.0.0.1:{sip_port}", language="en",
                                   params={"attempt": "a1"})
            run = await sipp
    finally:
        await ep.stop()
    assert run.ok, run.output[-2000:]
    assert result.outcome == "answered" and result.sip_status == 200
    (rec,) = await hub.until_calls(1)
    assert rec.info.mode == "followup" and rec.info.params["attempt"] == "a1"
    assert rec.info.params["direction"] == "outbound"
    assert abs(dominant_hz(rec.caller_audio, 8000) - 700) < 10
    echo = decode_stream(cap.packets(), 0)
    assert rms_dbfs(echo) > -30 and abs(dominant_hz(echo, 8000) - 700) < 10


async def test_outbound_call_to_a_busy_line(tmp_path: Path) -> None:
    hub = EchoHub()
    ep = await started(hub)
    sip_port = free_port(socket.SOCK_DGRAM)
    sc = scenario("uas_busy.xml", tmp_path)
    try:
        sipp = asyncio.create_task(run_sipp(None, sc, sip_port=sip_port, media_port=media_port(), timeout=15))
        await until_listening(sip_port)
        result = await ep.dial(f"sip:+8613900002222@127.0.0.1:{sip_port}")
        run = await sipp
    finally:
        await ep.stop()
    assert result.outcome == "busy" and result.sip_status == 486
    assert run.ok, "SIPp got the ACK for its 486: " + run.output[-2000:]
    assert hub.calls == []


async def test_garbage_and_malformed_sip_are_ignored_and_calls_go_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    hub = EchoHub()
    ep = await started(hub)
    port = ep.local_addr[1]
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.bind(("127.0.0.1", 0))
    try:
        junk.sendto(b"\x00\x01\x02 definitely not SIP", ("127.0.0.1", port))
        junk.sendto(b"\xff\xfe-no-start-line", ("127.0.0.1", port))
        me = junk.getsockname()[1]
        junk.sendto(f"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKx\r\n\r\n".encode(),
                    ("127.0.0.1", port))
        junk.sendto((f"OPTIONS sip:carecall@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKo1\r\n"
                     "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:carecall@127.0.0.1>\r\nCall-ID: opt1\r\n"
                     "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
                    ("127.0.0.1", port))
        # the endpoint shares this event loop: wait for its two answers without blocking it
        junk.setblocking(False)
        loop = asyncio.get_running_loop()
        replies = [(await asyncio.wait_for(loop.sock_recv(junk, 4000), 30)).decode(errors="replace")
                   for _ in range(2)]
        speech = ulaw_file(tone(440, 1.0, 8000).samples, tmp_path / "s.ulaw")
        sc = scenario("uac_speech.xml", tmp_path, speech=str(speech), talk_ms="1500")
        run = await run_sipp(f"127.0.0.1:{port}", sc, sip_port=free_port(socket.SOCK_DGRAM), media_port=media_port(),
                             keys={"lang": "zh"})
    finally:
        junk.close()
        await ep.stop()
    assert any(r.startswith("SIP/2.0 400") for r in replies), replies  # missing headers → 400
    assert any(r.startswith("SIP/2.0 200") and "OPTIONS" in r for r in replies), replies
    assert "ignoring a malformed SIP message" in caplog.text and "missing required headers" in caplog.text
    assert run.ok, run.output[-2000:]
    (rec,) = await hub.until_calls(1)
    assert rec.info.language == "zh" and len(rec.caller_audio) > 7000


@pytest.mark.skipif(not HAVE_BARESIP, reason="needs baresip")
async def test_baresip_softphone_hears_the_echo(tmp_path: Path) -> None:
    hub = EchoHub()
    ep = await started(hub)
    speech = np.concatenate([tone(440, 1.5, 8000).samples, np.zeros(2 * 8000, np.int16)])
    try:
        output, heard_path = await run_baresip(f"sip:en@127.0.0.1:{ep.local_addr[1]}", speech, tmp_path,
                                               quit_after_s=8)
    finally:
        await ep.stop()
    assert "Call established" in output, output[-2000:]
    (rec,) = await hub.until_calls(1)
    assert rec.info.language == "en" and abs(dominant_hz(rec.caller_audio, 8000) - 440) < 10
    assert heard_path is not None, output[-2000:]
    heard, rate = read_wav_samples(heard_path)
    assert rate == 8000 and rms_dbfs(heard) > -35 and abs(dominant_hz(heard, 8000) - 440) < 10
