"""Calls through the real server over real sockets: speech in both languages, barge-in, and bad
input that must get a clear error without harming other calls."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import websockets

from voice.audio import Pcm
from voice.caller import CallerSession, fetch_call_token, scripted_call
from voice.resample import resample

pytestmark = pytest.mark.models


def is_speech(audio: Pcm) -> bool:
    """Speech, not silence or a tone: loud enough, and its loudness varies like syllables do."""
    x = audio.to_float()
    if len(x) < audio.sample_rate // 2:
        return False
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(axis=1))
    return audio.rms_dbfs() > -40 and rms.std() > 0.3 * rms.mean()


async def test_english_caller_is_heard_and_answered(carecall_server, say) -> None:
    report = await scripted_call(carecall_server.ws_url, "en", [say("I have a bad headache and a fever.", "en")])
    caller = [t for t in report.turns if t["speaker"] == "caller"]
    bot = [t for t in report.turns if t["speaker"] == "bot"]
    assert caller, report.events
    assert "headache" in caller[0]["text"].lower()
    assert "fever" in caller[0]["text"].lower()
    assert len(bot) >= 2  # greeting and a reply
    assert is_speech(Pcm.concat(report.bot_audio, report.output_rate))
    assert report.latencies_ms and report.latencies_ms[0] > 0  # measured on the caller's clock (speed: bench/)
    # the caller hung up with {"type": "end"} and still got the call's result
    assert report.end_reason == "caller ended the call"
    assert report.result.get("disposition")
    reply = bot[-1]
    m = reply["metrics"]
    assert m["voice_to_voice_ms"] > 0 and m["asr_ms"] is not None and m["tts_first_audio_ms"] is not None


async def test_mandarin_caller_is_heard_and_answered(carecall_server, say) -> None:
    report = await scripted_call(carecall_server.ws_url, "zh", [say("我从昨天开始发烧，还咳嗽。", "zh")])
    caller = [t for t in report.turns if t["speaker"] == "caller"]
    assert caller, report.events
    assert "发烧" in caller[0]["text"]
    assert "咳嗽" in caller[0]["text"]
    bot_audio = Pcm.concat(report.bot_audio, report.output_rate)
    assert is_speech(bot_audio)


async def test_barge_in_stops_the_bot_and_marks_the_turn(carecall_server, say) -> None:
    first = say("I have had a cough for three days.", "en")
    interruption = say("Sorry, wait, I also have a pain in my chest when I breathe in deeply.", "en")
    async with CallerSession(carecall_server.ws_url, "en", sample_rate=16000) as line:
        assert await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=120), line.report.events
        sent = await line.say(first)
        started = await line.wait_bot_audio(since=sent, timeout=120)
        assert started is not None
        await asyncio.sleep(0.4)  # the bot is mid-reply
        barge_at = time.monotonic()
        await line.say(interruption)
        clear = await line.wait_event("clear", timeout=60)
        assert clear is not None
        # the bot stopped within the barge-in threshold (600 ms of speech, exact on virtual time in
        # test_call_loop) plus the slack of a loaded 2-core machine, not after the whole sentence (~4 s)
        assert clear["_at"] - barge_at < 3.5
        # no bot audio of the interrupted reply keeps flowing after the clear
        after = [t for t in line.bot_audio_times if clear["_at"] + 0.15 < t < clear["_at"] + 0.6]
        assert not after
        # Wait for the event, not for a quiet spell: on a loaded machine the interruption may be
        # transcribed after the bot has already answered a first part of it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            t["speaker"] == "caller" and "chest" in t["text"].lower() for t in line.report.turns
        ):
            await asyncio.sleep(0.1)
        await line.hang_up()
    interrupted = [t for t in line.report.turns if t["speaker"] == "bot" and t["interrupted"]]
    assert interrupted, line.report.turns
    callers = [t["text"].lower() for t in line.report.turns if t["speaker"] == "caller"]
    assert any("chest" in c for c in callers), callers


async def test_a_backchannel_does_not_interrupt(carecall_server, say) -> None:
    async with CallerSession(carecall_server.ws_url, "en") as line:
        first = await line.wait_bot_audio(since=0.0, timeout=120)
        assert first is not None
        await asyncio.sleep(0.3)
        await line.say(say("Okay.", "en"))
        await line.wait_bot_quiet(since=first, quiet_s=1.0)
        await line.hang_up()
    assert not [e for e in line.report.events if e["type"] == "clear"]
    assert not [t for t in line.report.turns if t["speaker"] == "bot" and t["interrupted"]]


# --- bad input ------------------------------------------------------------------------------

async def _first_error(ws) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(msg, str) and json.loads(msg)["type"] == "error":
            return json.loads(msg)


async def _start(ws, **over) -> dict:
    await ws.send(json.dumps({"type": "start", "language": "en", "sample_rate": 16000, **over}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10)) if True else None
        if msg["type"] in ("started", "error"):
            return msg


@pytest.mark.parametrize(
    ("start", "code"),
    [
        ("not json", "bad_json"),
        ('{"type": "audio"}', "expected_start"),
        ('{"type": "start", "language": "fr"}', "bad_language"),
        ('{"type": "start", "language": "en", "sample_rate": 44100}', "bad_sample_rate"),
        ('{"type": "start", "language": "en", "mode": "surgery"}', "bad_mode"),
    ],
)
async def test_a_bad_start_is_refused_clearly(carecall_server, start: str, code: str) -> None:
    async with websockets.connect(carecall_server.ws_url) as ws:
        await ws.send(start)
        err = await _first_error(ws)
        assert err["code"] == code and err["message"]
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_audio_before_start_is_refused(carecall_server) -> None:
    async with websockets.connect(carecall_server.ws_url) as ws:
        await ws.send(b"\x00\x01" * 160)
        assert (await _first_error(ws))["code"] == "expected_start"


async def test_bad_frames_get_errors_and_the_call_goes_on(carecall_server) -> None:
    async with websockets.connect(carecall_server.ws_url, max_size=2**22) as ws:
        token = await fetch_call_token(carecall_server.ws_url, "en")  # /ws/call needs one by default
        assert (await _start(ws, token=token))["type"] == "started"
        await ws.send(b"\x00" * 321)  # odd byte count: not PCM16
        assert (await _first_error(ws))["code"] == "bad_audio_frame"
        await ws.send("AAAA//base64 audio in a text frame")  # text where audio belongs
        assert (await _first_error(ws))["code"] == "bad_json"
        await ws.send(json.dumps({"type": "teleport"}))
        assert (await _first_error(ws))["code"] == "unknown_event"
        await ws.send(json.dumps({"type": "dtmf", "digit": "X"}))
        assert (await _first_error(ws))["code"] == "bad_dtmf"
        await ws.send(b"\x00\x00" * 100_000)  # 200 kB in one frame
        assert (await _first_error(ws))["code"] == "frame_too_large"
        await ws.send(json.dumps({"type": "ping"}))
        while True:  # still alive and answering
            msg = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(msg, str) and json.loads(msg)["type"] == "pong":
                break


async def _first_bot_line(ws) -> str:
    while True:
        msg = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(msg, str) and (m := json.loads(msg))["type"] == "transcript" and m["speaker"] == "bot":
            return m["text"]


@pytest.mark.parametrize(("params", "asked"), [
    ({}, True),
    ({"consent": "page"}, False),  # the widget: the caller ticked the recording notice on its page
    ({"consent": "yes", "patient_id": "P-1"}, True),  # only "page" counts; other params come from the token
])  # fmt: skip
async def test_consent_given_on_the_widget_page_is_not_asked_again(carecall_server, params, asked) -> None:
    async with websockets.connect(carecall_server.ws_url) as ws:
        token = await fetch_call_token(carecall_server.ws_url, "en")
        assert (await _start(ws, token=token, params=params))["type"] == "started"
        greeting = await _first_bot_line(ws)
        assert ("recorded" in greeting.lower()) is asked, greeting
        assert "problem" in greeting.lower() or asked, greeting


async def test_a_vanishing_client_does_not_harm_other_calls(carecall_server, say) -> None:
    speech = resample(say("I have a rash on my arm.", "en"), 16000)

    async def vanish() -> None:
        ws = await websockets.connect(carecall_server.ws_url)
        token = await fetch_call_token(carecall_server.ws_url, "en")
        await _start(ws, sample_rate=speech.sample_rate, token=token)
        half = speech.samples[: len(speech.samples) // 2]
        for i in range(0, len(half), 320):
            await ws.send(half[i : i + 320].astype("<i2").tobytes())
        ws.transport.abort()  # gone mid-utterance, no close handshake

    other = asyncio.create_task(scripted_call(carecall_server.ws_url, "en", [speech]))
    await asyncio.gather(*(vanish() for _ in range(3)))
    report = await other
    assert any("rash" in t["text"].lower() for t in report.turns if t["speaker"] == "caller")
    import httpx

    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 60  # the server notices each vanished socket and ends its call
        while time.monotonic() < deadline:
            health = (await client.get(f"{carecall_server.base_url}/healthz")).json()
            if health["calls"] == 0:
                break
            await asyncio.sleep(0.2)
    assert health["calls"] == 0  # the vanished calls were cleaned up
