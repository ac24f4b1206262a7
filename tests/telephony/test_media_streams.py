"""Media Streams transport, webhook and signature: streamdouble (a real simulator no one here wrote)
for whole calls, and the strict carrier harness for the documented clear/mark semantics."""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from streamdouble import api as sd_api
from streamdouble.scenario import Dtmf as SdDtmf
from streamdouble.scenario import Say, Scenario, Wait
from streamdouble.session import SessionConfig

from settings import Settings
from telephony.media_streams import MediaStreamTransport
from telephony.stream_auth import TOKEN_PARAMETER, fetch_stream_parameters
from telephony.twilio_webhooks import build_router, twilio_signature
from tests.telephony.conftest import CallRecord, EchoHub, ServerThread, dominant_hz, next_event, tone
from tests.telephony.twilio_carrier import StrictCarrier
from voice import g711
from voice.events import CallerHangup, Dtmf


def make_app(hub: EchoHub, **settings: object) -> FastAPI:
    app = FastAPI()
    app.include_router(build_router(Settings(**settings), get_hub=lambda _app: hub))
    return app


def ulaw_frames(samples: np.ndarray) -> list[bytes]:
    data = g711.ulaw_encode(samples)
    return [data[i:i + 160].ljust(160, b"\xff") for i in range(0, len(data), 160)]


# --- signature and TwiML ---------------------------------------------------------------------
def test_signature_matches_twilios_published_vector() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_voice_webhook_answers_connect_stream_and_checks_signatures() -> None:
    hub = EchoHub()
    base = "https://carecall.example"
    app = make_app(hub, twilio_auth_token="secret-token", public_base_url=base)
    client = TestClient(app)
    form = {"CallSid": "CA42", "From": "+8613800000000", "To": "+861010000000", "AccountSid": "AC1"}
    path = "/telephony/twilio/voice?language=en&mode=followup&attempt=7"

    assert client.post(path, data=form).status_code == 403  # unsigned
    sig = twilio_signature("secret-token", base + path, form)
    assert client.post(path, data={**form, "To": "+1999"}, headers={"X-Twilio-Signature": sig}).status_code == 403
    r = client.post(path, data=form, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.text)
    connect = root.find("Connect")
    assert connect is not None and connect.get("action") == base + "/telephony/twilio/stream-ended"
    stream = connect.find("Stream")
    assert stream is not None and stream.get("url") == "wss://carecall.example/telephony/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params.pop(TOKEN_PARAMETER)  # the signed stream token the stream's start must carry
    assert params == {"language": "en", "mode": "followup", "attempt": "7"}

    # the stream's end: hang up, or dial the human line when the call asked for a transfer
    end = "/telephony/twilio/stream-ended"
    f2 = {"CallSid": "CA42"}
    h2 = {"X-Twilio-Signature": twilio_signature("secret-token", base + end, f2)}
    assert ET.fromstring(client.post(end, data=f2, headers=h2).text).find("Hangup") is not None


def test_webhook_without_token_accepts_and_busy_worker_rejects() -> None:
    hub = EchoHub(max_calls=0)
    client = TestClient(make_app(hub))
    r = client.post("/telephony/twilio/voice", data={"CallSid": "CA1"})
    assert r.status_code == 200 and ET.fromstring(r.text).find("Reject").get("reason") == "busy"
    hub.max_calls = 1
    r = client.post("/telephony/twilio/voice", data={"CallSid": "CA1"})
    stream = ET.fromstring(r.text).find("Connect/Stream")
    assert stream.get("url") == "ws://testserver/telephony/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params.pop(TOKEN_PARAMETER) and params == {"language": "zh", "mode": "triage"}


# --- whole calls with streamdouble -----------------------------------------------------------
def test_streamdouble_call_end_to_end(run_in_thread) -> None:
    hub = EchoHub()
    caller = tone(440, 1.5, 8000).samples
    with ServerThread(make_app(hub)) as srv:
        url = srv.ws + "/telephony/twilio/stream"
        # the TwiML's parameters (signed stream token included), plus one the carrier made up
        custom = {**run_in_thread(fetch_stream_parameters(url, {"language": "en", "mode": "followup"})),
                  "patient": "p1"}
        cfg = SessionConfig(custom_parameters=custom, response_timeout_s=5, quiet_period_s=1.0)
        report = run_in_thread(sd_api.call(url, frames=ulaw_frames(caller), config=cfg))
        (rec,) = hub.wait_calls(1)
    assert report.violations == [] and report.spoke, report.to_dict()
    assert report.result.marks_echoed, "every piece of bot audio is followed by a mark"
    reply = g711.ulaw_decode(report.audio_received)
    assert len(reply) >= 8000  # at least 1 s of the echo came back
    assert abs(dominant_hz(reply, 8000) - 440) < 15
    assert rec.info.language == "en" and rec.info.mode == "followup" and rec.info.channel == "media-stream"
    assert "patient" not in rec.info.params, "an unsigned customParameter is ignored"
    assert rec.info.params["stream_sid"] == report.stream_sid
    # 8 kHz as on the wire: only the call loop resamples
    assert rec.transport.input_rate == 8000 and abs(dominant_hz(rec.caller_audio, 8000) - 440) < 15
    assert rec.hangup is not None


def test_streamdouble_scenario_with_dtmf(run_in_thread, tmp_path: Path) -> None:
    hub = EchoHub()
    frames = ulaw_frames(tone(600, 0.6, 8000).samples)
    scenario = Scenario("dtmf", [Say(tmp_path / "tone.wav", frames), SdDtmf("5"), Wait(0.5), SdDtmf("#"),
                                 Wait(1.0)])
    with ServerThread(make_app(hub)) as srv:
        url = srv.ws + "/telephony/twilio/stream"
        custom = run_in_thread(fetch_stream_parameters(url))
        report = run_in_thread(sd_api.run_scenario(url, scenario, config=SessionConfig(
            custom_parameters=custom, response_timeout_s=5)))
        (rec,) = hub.wait_calls(1)
    assert report.violations == []
    assert rec.digits == ["5", "#"]


# --- the strict harness: pacing, marks, clear ------------------------------------------------
CLAUSES = (300.0, 500.0, 700.0)


async def talker(rec: CallRecord) -> None:
    """Says three 1 s clauses; on a DTMF key (our stand-in for barge-in) clears and notes what the
    transport believes was heard."""
    t = rec.transport
    t.mark_turn()
    for hz in CLAUSES:
        await t.send_audio(tone(hz, 1.0, 8000, 0.3))
    watcher = asyncio.create_task(_note_when_played(rec))
    while True:
        ev = await next_event(rec)
        if isinstance(ev, Dtmf):
            await t.clear()
            rec.notes["played_at_clear"] = t.played_s()
            await asyncio.sleep(0.5)
            rec.notes["played_later"] = t.played_s()
        if isinstance(ev, CallerHangup):
            if "played_at_clear" not in rec.notes:
                await watcher  # no clear: the caller hangs up only after it echoed every mark
            watcher.cancel()
            return


async def _note_when_played(rec: CallRecord) -> None:
    await rec.transport.wait_played()
    await asyncio.sleep(0.3)
    rec.notes["played_end"] = rec.transport.played_s()


def test_audio_is_paced_in_real_time_and_marks_track_playback(run_in_thread) -> None:
    hub = EchoHub(talker)

    async def caller(url: str) -> StrictCarrier:
        async with StrictCarrier(url) as c:
            # talk (silence) until every clause was played and its mark echoed, however slow the
            # machine, then a little longer: the agent's view of "played" must not run ahead
            for _ in range(150):
                if len([m for m in c.log.marks_echoed if not m[2]]) >= 3:
                    break
                await c.silence(0.2)
            await c.silence(0.5)
        return c

    with ServerThread(make_app(hub)) as srv:
        c = run_in_thread(caller(srv.ws + "/telephony/twilio/stream"))
        (rec,) = hub.wait_calls(1)
    log = c.log
    assert log.violations == []
    arrivals = np.array(log.media_arrivals)
    assert len(arrivals) == 150  # 3 s in 20 ms frames
    ahead = np.arange(150) * 0.02 - (arrivals - arrivals[0])
    assert ahead.max() < 0.12, "never more than the small lead ahead of real time"
    assert arrivals[-1] - arrivals[0] > 2.8
    assert [n for n, _, by_clear in log.marks_echoed if not by_clear] == log.marks_received
    assert len(log.marks_received) == 3
    assert rec.notes["played_end"] == pytest.approx(3.0, abs=0.05)
    heard = log.heard_pcm()
    assert abs(dominant_hz(heard[:8000], 8000) - 300) < 10 and abs(dominant_hz(heard[-8000:], 8000) - 700) < 10


@pytest.mark.parametrize("marks_on_clear", [True, False], ids=["twilio-echoes-marks", "streamdouble-drops-marks"])
def test_clear_stops_audio_and_played_s_is_what_was_heard(run_in_thread, marks_on_clear: bool) -> None:
    hub = EchoHub(talker)

    async def caller(url: str) -> tuple[StrictCarrier, float, int]:
        async with StrictCarrier(url, marks_on_clear=marks_on_clear) as c:
            while c.log.heard_s < 1.5:
                await c.silence(0.02)
            heard_at_key = c.log.heard_s
            await c.dtmf("1")
            await c.silence(1.2)
            frames_at_end = len(c.log.heard)
        return c, heard_at_key, frames_at_end

    with ServerThread(make_app(hub)) as srv:
        c, heard_at_key, _frames_at_end = run_in_thread(caller(srv.ws + "/telephony/twilio/stream"))
        (rec,) = hub.wait_calls(1)
    assert c.log.violations == [] and len(c.log.clears) == 1
    assert c.log.heard_s - heard_at_key < 0.2, "audio stops within a few frames of the clear"
    assert rec.notes["played_at_clear"] == pytest.approx(heard_at_key, abs=0.15)
    assert rec.notes["played_later"] == rec.notes["played_at_clear"]
    if not marks_on_clear:
        assert not [n for n, _, b in c.log.marks_echoed if b]


async def echo_with_bad_input(url: str, *, bad: bool) -> StrictCarrier:
    async with StrictCarrier(url) as c:
        if bad:
            await c.send_raw("this is not json")
            await c.send_raw(b"\x00\x01binary")
            await c.send_raw("[1, 2, 3]")
            await c.send({"event": "teleport", "to": "mars"})
            await c.send({"event": "media", "streamSid": "MZ-not-this-call",
                          "media": {"payload": "//////////8="}})
            await c.send({"event": "media", "media": {"payload": "not base64 at all!!"}})
            await c.send({"event": "media", "media": {"payload": "A" * 40000}})
            await c.send_raw(json.dumps({"event": "media", "sequenceNumber": "1", "streamSid": c.stream_sid,
                                         "media": {"payload": "//////////8="}}))  # replayed seq
            await c.send({"event": "start", "start": {"streamSid": "MZother"}})
            await c.send({"event": "dtmf", "dtmf": {"digit": "not-a-digit"}})
        await c.stream(tone(400 if bad else 800, 0.6, 8000).samples)
        await c.silence(1.0)
    return c


def test_bad_input_is_ignored_with_a_log_line_and_other_calls_go_on(run_in_thread, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="carecall.telephony")
    hub = EchoHub()

    async def both(url: str) -> list[StrictCarrier]:
        return list(await asyncio.gather(echo_with_bad_input(url, bad=True), echo_with_bad_input(url, bad=False)))

    with ServerThread(make_app(hub)) as srv:
        bad, good = run_in_thread(both(srv.ws + "/telephony/twilio/stream"))
        recs = hub.wait_calls(2)
    by_sid = {r.info.params["stream_sid"]: r for r in recs}
    rec_bad, rec_good = by_sid[bad.stream_sid], by_sid[good.stream_sid]
    for rec, hz in ((rec_bad, 400), (rec_good, 800)):
        got = rec.caller_audio
        # the valid audio arrived (0.6 s + 1.0 s silence at 8 kHz, as on the wire)
        assert 1.55 * 8000 < len(got) <= 1.6 * 8000
        assert abs(dominant_hz(got[: 4800], 8000) - hz) < 15
    assert rec_bad.digits == []
    assert abs(len(rec_bad.caller_audio) - len(rec_good.caller_audio)) <= 160  # nothing extra got through
    for c, hz in ((bad, 400), (good, 800)):
        assert c.log.violations == [] and abs(dominant_hz(c.log.heard_pcm(), 8000) - hz) < 15
    text = caplog.text
    for needle in ("not JSON", "binary frame", "not an object", "unknown event", "wrong streamSid",
                   "not base64", "oversized", "out-of-order", "second 'start'", "malformed dtmf"):
        assert needle in text, needle


def test_busy_worker_closes_the_stream(run_in_thread) -> None:
    hub = EchoHub(max_calls=0)

    async def caller(url: str) -> StrictCarrier:
        async with StrictCarrier(url) as c:
            await c.wait_closed(5)
        return c

    with ServerThread(make_app(hub)) as srv:
        c = run_in_thread(caller(srv.ws + "/telephony/twilio/stream"))
    assert c.log.closed_by_agent and hub.calls == []


async def transferring(rec: CallRecord) -> None:
    t = rec.transport
    t.mark_turn()
    await t.send_audio(tone(500, 0.5, 8000))
    rec.notes["transferred"] = await t.transfer("sip:nurse@pbx.example")
    while not isinstance(await next_event(rec), CallerHangup):
        pass


def test_transfer_ends_the_stream_and_the_action_url_dials_the_human_line(run_in_thread) -> None:
    hub = EchoHub(transferring)
    app = make_app(hub)

    async def caller(url: str) -> StrictCarrier:
        async with StrictCarrier(url, call_sid="CAtransfer1") as c:
            await c.wait_closed(5)
        return c

    with ServerThread(app) as srv:
        c = run_in_thread(caller(srv.ws + "/telephony/twilio/stream"))
        (rec,) = hub.wait_calls(1)
        r = TestClient(app).post("/telephony/twilio/stream-ended", data={"CallSid": "CAtransfer1"})
    assert rec.notes["transferred"] is True and c.log.closed_by_agent
    assert c.log.heard_s == pytest.approx(0.5, abs=0.06), "the bot's last words play before the transfer"
    dial = ET.fromstring(r.text).find("Dial/Sip")
    assert dial is not None and dial.text == "sip:nurse@pbx.example"


async def test_mark_echoes_caused_by_clear_do_not_count_as_heard() -> None:
    """Deterministic: a large lead puts all audio and marks at the carrier at once, so marks are
    pending when the clear goes out, and Twilio then answers every one of them immediately."""
    sent: list[dict] = []

    async def send_text(text: str) -> None:
        sent.append(json.loads(text))

    async def close(code: int, reason: str) -> None:
        return None

    t = MediaStreamTransport(call_id="u1", stream_sid="MZ1", call_sid="CA1", send_text=send_text,
                             close=close, lead_s=10.0)
    t.start()
    try:
        t.mark_turn()
        for hz in CLAUSES:
            await t.send_audio(tone(hz, 1.0, 8000))
        await t.wait_played(5)
        marks = [m["mark"]["name"] for m in sent if m["event"] == "mark"]
        assert len(marks) == 3 and sum(m["event"] == "media" for m in sent) == 150
        seq = iter(range(1, 100))

        def echo(name: str) -> None:
            t.handle({"event": "mark", "streamSid": "MZ1", "sequenceNumber": str(next(seq)), "mark": {"name": name}})

        echo(marks[0])  # the first clause played
        assert t.played_s() >= 1.0
        await t.clear()
        at_clear = t.played_s()
        assert 1.0 <= at_clear < 1.5
        for name in marks[1:]:  # Twilio answers the cleared marks at once
            echo(name)
        assert t.played_s() == at_clear
        assert sent[-1] == {"event": "clear", "streamSid": "MZ1"}
        # the next turn starts from zero and is tracked again
        t.mark_turn()
        assert t.played_s() == 0.0
        await t.send_audio(tone(300, 0.2, 8000))
        await t.wait_played(5)
        echo([m["mark"]["name"] for m in sent if m["event"] == "mark"][-1])
        assert t.played_s() == pytest.approx(0.2, abs=0.03)
    finally:
        await t.aclose()
