"""The WebRTC transport against a real aiortc client peer over loopback: caller audio reaches the
loop at the decoder's 48 kHz (the call loop resamples), bot audio comes back as Opus in real time,
`clear()` silences it at once, events arrive on the data channel, and either side hanging up ends the call cleanly."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.conftest import apoll
from tests.web.widget.peer import ClientPeer, ToneTrack, dominant_hz, rms
from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup, Dtmf, PartialTranscript, StateChanged
from web.widget.rtc import BotAudioTrack, WebRtcTransport

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def connect(client: ClientPeer, **kwargs) -> WebRtcTransport:  # type: ignore[no-untyped-def]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transport = WebRtcTransport(pc, emergency_number="120", **kwargs)
    await pc.setRemoteDescription(RTCSessionDescription(**await client.offer()))
    pc.addTrack(transport.track)
    await pc.setLocalDescription(await pc.createAnswer())
    await client.accept({"sdp": pc.localDescription.sdp, "type": "answer"})
    assert await transport.wait_connected(30)  # ICE on loopback: quick, slower on a loaded machine
    return transport


async def next_audio(transport: WebRtcTransport, timeout: float = 30.0) -> CallerAudio:
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(transport.receive(), max(0.1, deadline - time.monotonic()))
        if isinstance(event, CallerAudio):
            return event


async def test_caller_audio_arrives_at_the_loop_rate_and_echo_comes_back() -> None:
    client = ClientPeer(ToneTrack(freq=440.0))
    transport = await connect(client)
    try:
        # caller -> loop: 48 kHz mono as decoded (only the call loop resamples), the tone intact
        chunks = [await next_audio(transport) for _ in range(60)]
        assert all(c.audio.sample_rate == 48_000 for c in chunks)
        caller = Pcm.concat([c.audio for c in chunks[20:]], 48_000)  # past the codec's start-up
        assert abs(dominant_hz(caller.samples, 48_000) - 440) < 20
        assert rms(caller.samples) > 0.1

        # loop -> caller: echo 0.8 s of it back through the outbound track
        start = time.monotonic()
        frames_before = transport.track.frames_sent
        await transport.send_audio(caller)
        assert await transport.wait_for_playout(30)
        frames = transport.track.frames_sent - frames_before
        elapsed = time.monotonic() - start

        def loud_back() -> np.ndarray:
            back = client.audio_since(start)
            return back[np.abs(back) > 1000]

        await apoll(lambda: len(loud_back()) > 0.5 * 48_000, 30.0, "half a second of the tone back at the client")
        back = client.audio_since(start)
        assert rms(back) > 0.05
        assert abs(dominant_hz(back, 48_000) - 440) < 20
        assert len(loud_back()) < 1.1 * len(caller.samples)  # nothing played twice
        # every frame sent, paced in real time (20 ms frames at 50 a second), not a burst
        n = len(caller.samples) // 960
        assert n <= frames <= n + 1, (frames, n)  # (+1: a frame already being pulled when it was queued)
        assert elapsed >= n * 0.02 - 0.1, (n, elapsed)
    finally:
        await transport.close()
        await client.close()


async def test_clear_silences_the_bot_at_once_and_played_s_counts_what_was_heard() -> None:
    client = ClientPeer(ToneTrack(amplitude=0.0))
    transport = await connect(client, max_ahead_s=10.0)
    try:
        tone = (0.4 * 32767 * np.sin(2 * np.pi * 300 * np.arange(5 * 48_000) / 48_000)).astype(np.int16)
        transport.mark_turn()
        await transport.send_audio(Pcm(tone, 48_000))  # 5 s queued
        start = time.monotonic()
        await apoll(lambda: transport.played_s() >= 0.8 and len(client.audio_since(start)) > 0.6 * 48_000, 30.0,
                    "0.8 s played and 0.6 s received")
        played = transport.played_s()
        cleared_at = time.monotonic()
        heard = await transport.clear()  # what the caller heard of this turn
        assert played <= heard < played + 0.1 and heard < 5.0
        assert transport.track.queued_s == 0
        assert transport.played_s() == heard  # the turn stops where it was cut
        transport.mark_turn()
        assert transport.played_s() == 0.0
        await apoll(lambda: len(client.audio_since(cleared_at)) >= 0.8 * 48_000, 30.0,
                    "audio after the clear")  # the track keeps sending
        # Judged on what arrived, not on when (a loaded machine delays the frames already in flight):
        # the caller got no more of the turn than had been sent when it was cut, and then only silence.
        received = client.audio_since(start)
        tone_s = np.count_nonzero(np.abs(received) > 1000) / 48_000
        assert tone_s <= heard + 0.1, (tone_s, heard)
        assert rms(client.audio_since(start, cleared_at)) > 0.1  # the tone was heard before the clear
        assert rms(client.audio_since(cleared_at)[-int(0.4 * 48_000):]) < 0.005
    finally:
        await transport.close()
        await client.close()


async def test_send_audio_waits_when_far_ahead_of_real_time() -> None:
    client = ClientPeer(ToneTrack(amplitude=0.0))
    transport = await connect(client, max_ahead_s=0.5)
    try:
        start = time.monotonic()
        for _ in range(10):  # 2 s of audio in 200 ms chunks
            await transport.send_audio(Pcm.silence(0.2, 48_000))
            assert transport.track.queued_s <= 0.5 + 0.2 + 0.001  # never more than max_ahead + one piece
        elapsed = time.monotonic() - start
        assert elapsed > 1.2  # it had to wait for ~1.5 s to be played (longer on a loaded machine)
    finally:
        await transport.close()
        await client.close()


async def test_events_go_over_the_data_channel_as_json() -> None:
    client = ClientPeer()
    transport = await connect(client)
    try:
        await transport.send_event(StateChanged("c1", "listening"))
        await transport.send_event(PartialTranscript("c1", "胸口疼"))
        partial = await client.wait_message("partial")
        assert partial == {"type": "partial", "text": "胸口疼"}
        assert (await client.wait_message("state"))["state"] == "listening"
    finally:
        await transport.close()
        await client.close()


async def test_caller_end_message_and_dtmf_reach_the_loop() -> None:
    client = ClientPeer()
    transport = await connect(client)
    try:
        while client.channel.readyState != "open":
            await asyncio.sleep(0.02)
        client.channel.send('{"type":"dtmf","digit":"5"}')
        client.channel.send("not json")
        client.channel.send('{"type":"end"}')
        events = []
        while True:
            event = await asyncio.wait_for(transport.receive(), 5)
            if not isinstance(event, CallerAudio):
                events.append(event)
            if isinstance(event, CallerHangup):
                break
        assert events[0] == Dtmf("5")
        assert isinstance(events[-1], CallerHangup)
        # after a hang-up, receive keeps saying so rather than blocking
        assert isinstance(await asyncio.wait_for(transport.receive(), 1), (CallerHangup, CallerAudio))
    finally:
        await transport.close()
        await client.close()


async def test_client_closing_the_connection_ends_the_call() -> None:
    client = ClientPeer()
    transport = await connect(client)
    await client.close()
    deadline = time.monotonic() + 30
    while True:
        event = await asyncio.wait_for(transport.receive(), max(0.1, deadline - time.monotonic()))
        if isinstance(event, CallerHangup):
            break
    await transport.close()
    assert transport.pc.connectionState == "closed"


async def test_hangup_lets_the_goodbye_play_then_closes() -> None:
    client = ClientPeer(ToneTrack(amplitude=0.0))
    transport = await connect(client)
    tone = (0.4 * 32767 * np.sin(2 * np.pi * 300 * np.arange(48_000 // 2) / 48_000)).astype(np.int16)
    await transport.send_audio(Pcm(tone, 48_000))
    start = time.monotonic()
    await transport.hangup("call completed")
    assert time.monotonic() - start >= 0.2  # waited for the queued half second
    assert transport.pc.connectionState == "closed"
    msgs = [m["type"] for m in client.messages]
    assert "hangup" in msgs
    await client.wait_state("closed")
    await client.close()


def test_bot_track_frames_are_20ms_mono_with_running_timestamps() -> None:
    async def run() -> None:
        track = BotAudioTrack()
        await track.output.push(Pcm(np.full(1500, 1000, dtype=np.int16), 48_000))
        track.output.flush()  # the end of the turn: the part-frame goes out padded
        frames = [await track.recv() for _ in range(3)]
        assert [f.samples for f in frames] == [960, 960, 960]
        assert [f.pts for f in frames] == [0, 960, 1920]
        data = [f.to_ndarray().reshape(-1) for f in frames]
        assert (data[0] == 1000).all() and (data[1][:540] == 1000).all() and (data[1][540:] == 0).all()
        assert track.output.segment_sent_s == pytest.approx(2 * 960 / 48_000)  # whole frames on the wire
        track.stop()

    asyncio.run(run())
