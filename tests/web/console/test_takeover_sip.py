"""Live takeover of a SIP call on the whole product (`carecall serve` with its SIP endpoint): the caller
is SIPp playing real speech over RTP (what it receives captured off the loopback), the nurse the
console in Chromium with a fake microphone. The nurse takes over: the bot says its handover sentence
and nothing more, the caller's line receives her voice (speech on the RTP stream while the bot is
quiet), her browser receives the caller's, both sides' words are in the record, and she hands back."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Playwright

from tests.conftest import RunningServer, add_user, start_server, stop_server
from tests.telephony.conftest import free_port
from tests.telephony.peers import (
    HAVE_SIPP,
    HAVE_TCPDUMP,
    Capture,
    SippRun,
    decode_stream,
    run_sipp,
    scenario,
    ulaw_file,
)
from tests.telephony.test_phone_calls import is_speech, phone_speech
from tests.web.console.test_takeover_browser import INBOUND_ENERGY
from tests.web.console.test_takeover_product import NURSE, SHOTS, looping_browser, nurse_takes_over, poll, rows
from tests.web.widget.speech import mic_wav
from web.console.takeover import load_phrases

pytestmark = [
    pytest.mark.browser, pytest.mark.models, pytest.mark.sip, pytest.mark.timeout(600),
    pytest.mark.skipif(not (HAVE_SIPP and HAVE_TCPDUMP), reason="needs sipp and tcpdump"),
]  # fmt: skip

# the caller says the sentence again and again from CALLER_SPEAKS_FROM_S to the end of the call, so some of
# it falls after the takeover however long the nurse's browser takes to start, sign in and join (no
# wall-clock window to meet: the test waits for the handover, then for the caller's next sentence)
CALLER_SPEAKS_FROM_S = 30.0
CALLER_REPEATS_EVERY_S = 9.0
TALK_S = 100.0


@pytest.fixture(scope="module")
def sip_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:

    sip_port = free_port(socket.SOCK_DGRAM)
    lo = random.randrange(40000, 49000, 100)
    server = start_server(tmp_path_factory.mktemp("takeover-sip"), extra_env={
        "CARECALL_SIP_ENABLED": "true", "CARECALL_SIP_PORT": str(sip_port),
        "CARECALL_SIP_RTP_PORT_MIN": str(lo), "CARECALL_SIP_RTP_PORT_MAX": str(lo + 99),
        "CARECALL_SIP_DEFAULT_LANGUAGE": "en", "CARECALL_SILENCE_REPROMPT_S": "300",
        "CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]', "CARECALL_SECRET_KEY": "takeover-sip-secret",
        # the fixed phrases are not rendered in the background during the call (two cores: the handover
        # sentence, which the nurse's voice waits for, gets the executor to itself)
        "CARECALL_TTS_WARM_START": "false",
    })  # fmt: skip
    server.env["SIP_PORT"] = str(sip_port)
    try:
        add_user(server, *NURSE)
        yield server
    finally:
        stop_server(server.process)


def test_nurse_takes_over_a_sip_call(pw: Playwright, sip_product: RunningServer, say, tmp_path: Path) -> None:
    db = sip_product.data_dir / "carecall.db"
    phrases = load_phrases()
    # the caller: "yes" to the recording notice, then, from CALLER_SPEAKS_FROM_S, one sentence over and over
    yes = phone_speech(say, "Yes.", lead_s=7.0, tail_s=0.0)
    sentence = phone_speech(say, "I feel dizzy when I stand up.", lead_s=0.0, tail_s=0.0)
    gap = np.zeros(int(CALLER_REPEATS_EVERY_S * 8000) - len(sentence), np.int16)
    repeats = int((TALK_S - CALLER_SPEAKS_FROM_S) // CALLER_REPEATS_EVERY_S)
    lead = np.zeros(int(CALLER_SPEAKS_FROM_S * 8000) - len(yes), np.int16)
    caller_audio = ulaw_file(np.concatenate([yes, lead, *[np.concatenate([sentence, gap])] * repeats]),
                             tmp_path / "caller.ulaw")  # fmt: skip
    sc = scenario("uac_speech.xml", tmp_path, speech=str(caller_audio), talk_ms=str(int(TALK_S * 1000)))
    media_port = random.randrange(26000, 29000, 2)
    nurse_wav = mic_wav(tmp_path, 2.0, "Hello, this is the nurse speaking. Can you hear me?", 6.0)
    done: list[SippRun] = []

    with Capture(tmp_path / "caller.pcap", media_port) as cap:
        def call() -> None:
            target = f"127.0.0.1:{sip_product.env['SIP_PORT']}"
            run = run_sipp(target, sc, sip_port=free_port(socket.SOCK_DGRAM), media_port=media_port,
                           keys={"lang": "en"}, timeout=TALK_S + 30)  # fmt: skip
            done.append(asyncio.run(run))

        sipp = threading.Thread(target=call, daemon=True)
        sipp.start()
        live_sql = "SELECT id FROM calls WHERE channel = 'sip' AND status = 'in_progress'"
        call_id = poll(lambda: rows(db, live_sql), 60, "a live SIP call")[0][0]
        bot_sql = "SELECT 1 FROM turns WHERE call_id = ? AND speaker = 'bot'"
        poll(lambda: len(rows(db, bot_sql, call_id)) >= 2, 90, "the greeting and the first question")
        with looping_browser(pw, nurse_wav) as browser:
            nurse = nurse_takes_over(browser, sip_product.base_url, call_id)
            handover = poll(lambda: rows(db, "SELECT idx, start_s, end_s FROM turns WHERE call_id = ? AND text = ?",
                                         call_id, phrases.handover["en"]), 60, "the handover sentence")[0]  # fmt: skip
            # her sentence (looped by her microphone) may come as more than one turn: a pause at the comma
            nurse_sql = "SELECT text FROM turns WHERE call_id = ? AND speaker = 'nurse'"
            poll(lambda: "nurse" in " ".join(t for (t,) in rows(db, nurse_sql, call_id)).lower(), 120,
                 lambda: f"the nurse's sentence in her turns {rows(db, nurse_sql, call_id)}")  # fmt: skip
            nurse_heard = nurse.evaluate(INBOUND_ENERGY)
            caller_sql = "SELECT text FROM turns WHERE call_id = ? AND speaker = 'caller' AND idx > ?"
            poll(lambda: any("dizzy" in t.lower() for (t,) in rows(db, caller_sql, call_id, handover[0])), 120,
                 "the caller's words after the handover")  # fmt: skip
            poll(lambda: nurse.evaluate(INBOUND_ENERGY) > nurse_heard + 1e-4, 30, "the caller's voice at the nurse")
            after = rows(db, "SELECT speaker FROM turns WHERE call_id = ? AND idx > ?", call_id, handover[0])
            assert "bot" not in {s for (s,) in after}, after  # the bot stayed quiet
            nurse.click("#takeover-handback")
            nurse.locator("#takeover[data-state=bot]").wait_for(timeout=30_000)
            back = poll(lambda: rows(db, "SELECT idx, start_s FROM turns WHERE call_id = ? AND text = ?", call_id,
                                     phrases.hand_back["en"]), 60, "the hand-back sentence")[0]  # fmt: skip
            nurse.reload()
            nurse.locator(".turn.speaker-nurse").first.wait_for()
            SHOTS.mkdir(parents=True, exist_ok=True)
            nurse.screenshot(path=str(SHOTS / "console-takeover-sip.png"), full_page=True)
        sipp.join(TALK_S + 60)
    assert done and done[0].ok, done[0].output[-2000:] if done else "SIPp did not finish"
    # what the caller's line received while the nurse had the call and the bot was quiet: her voice
    # (the call's clock starts as the line is answered: the worker's first RTP packet, within a frame)
    packets = cap.packets()
    t0 = packets[0][0]
    quiet = [(t, p) for t, p in packets if handover[2] + 0.3 <= t - t0 < back[1] - 0.3]
    heard = decode_stream(quiet, 0)
    assert len(heard) > 5 * 8000 and is_speech(heard, 8000), ("the caller heard the nurse", handover, back)
    kinds = [k for (k,) in rows(db, "SELECT kind FROM reviews WHERE call_id = ? ORDER BY id", call_id)]
    assert kinds == ["takeover", "handback"]
    actions = {a for (a,) in rows(db, "SELECT action FROM audit_events WHERE call_id = ?", call_id)}
    assert {"takeover", "handback"} <= actions
