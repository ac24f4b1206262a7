"""Live takeover in Debian's Chromium: a nurse signs in, opens a live call's page and clicks "Take
over"; her browser (fake microphone playing real speech) joins the call's audio over WebRTC with the
server's aiortc. The call is the real call loop with the real triage dialogue, recorded by the real
CallRecorder; the caller is a line driven from the test (a Python transport, not a second browser).
Checked: the bot says its handover sentence and then nothing, the caller's line receives the nurse's
voice, the nurse's browser receives the caller's voice (WebRTC stats), the nurse's words are in the
record as nurse turns, and hand-back and the history and audit entries are there."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from dialogue.factory import build_dialogue_factory
from records.models import AuditEvent, Review, Turn
from tests.web.conftest import patient
from tests.web.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, served, sign_in  # noqa: F401
from tests.web.console.test_takeover import (
    CALLER_1,
    CALLER_3,
    NURSE_1,
    YES,
    ClipRecognizer,
    LineTransport,
    ToneSynthesizer,
)
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.events import CallerHangup, CallInfo
from voice.hub import Engines
from voice.takeover import TakeoverRegistry
from web.console.takeover import load_phrases

pytestmark = [pytest.mark.browser, pytest.mark.models]

CALL_ID = "c0ffee0takeover"


def turns(database) -> list[tuple[int, str, str]]:
    with database.session() as s:
        rows = s.execute(select(Turn.idx, Turn.speaker, Turn.text).where(Turn.call_id == CALL_ID).order_by(Turn.idx))
        return [tuple(r) for r in rows]


def wait_for(predicate, timeout: float = 90.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_nurse_takes_over_a_live_call_in_chromium(served, say, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    from voice.caller import write_wav

    clips = {t: say(t, "en") for t in (YES, CALLER_1, NURSE_1, CALLER_3)}
    mic = tmp_path / "nurse.wav"
    write_wav(mic, Pcm.concat([Pcm.silence(1.5, clips[NURSE_1].sample_rate), clips[NURSE_1],
                               Pcm.silence(6.0, clips[NURSE_1].sample_rate)], clips[NURSE_1].sample_rate))  # fmt: skip
    console = served.console
    database = console.services.database
    phrases = load_phrases()
    engines = Engines(
        recognizer=ClipRecognizer(clips), synthesizers={"en": ToneSynthesizer()},
        dialogue=build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911"}, llm_capable=False),
    )  # fmt: skip
    live: dict[str, object] = {}  # the worker's running calls (CallHub.active)
    console.app.state.takeovers = TakeoverRegistry(phrases, engines.recognizer, live)
    tt = TurnTaking(partial_interval_s=0, speculative_decoding=False, silence_reprompt_s=600)
    line = LineTransport()

    async def start_call():
        info = CallInfo(call_id=CALL_ID, language="en", channel="webrtc")
        call = live[CALL_ID] = Call(info=info, transport=line, engines=engines,
                                    publish=console.services.recorder.on_event, turn_taking=tt)  # fmt: skip
        return asyncio.ensure_future(call.run())

    def on_server(coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, served.loop).result(timeout)

    async def flushed() -> None:
        await console.services.recorder.flush()

    def recorded() -> list[tuple[int, str, str]]:
        on_server(flushed())
        return turns(database)

    running = on_server(start_call())
    wait_for(lambda: any(s == "bot" for _, s, _ in recorded()), what="the greeting")
    on_server(line.speak(clips[YES]))
    wait_for(lambda: len([1 for _, s, _ in recorded() if s == "bot"]) >= 2, what="the complaint question")
    on_server(line.speak(clips[CALLER_1]))
    wait_for(lambda: len([1 for _, s, _ in recorded() if s == "bot"]) >= 3, what="a protocol question")

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, ignore_default_args=["--mute-audio"],
            args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={mic}", "--allow-loopback-in-peer-connection",
                  "--disable-features=WebRtcHideLocalIpsWithMdns"],
        )  # fmt: skip
        context = patient(browser.new_context(viewport={"width": 1400, "height": 900}))
        context.add_init_script(KEEP_PCS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, served.base, "nurse")
        page.goto(f"{served.base}/console/calls/{CALL_ID}")
        sent_before = len(line.sent)
        page.click("#takeover-start")
        expect(page.locator("#takeover")).to_have_attribute("data-state", "nurse", timeout=30000)
        wait_for(lambda: any(t == phrases.handover["en"] for _, s, t in recorded()), what="the handover sentence")
        # the nurse's words reach the caller's line and the record
        nurse_turn = wait_for(lambda: next((r for r in recorded() if r[1] == "nurse"), None), what="a nurse turn")
        assert nurse_turn[2] == NURSE_1
        heard = Pcm.concat(line.sent[sent_before:], 16000)
        assert heard.rms_dbfs() > -50 and heard.duration > clips[NURSE_1].duration
        # the caller speaks: the nurse's browser receives it
        before = page.evaluate(INBOUND_ENERGY)
        on_server(line.speak(clips[CALLER_3]))
        wait_for(lambda: any(t == CALLER_3 for _, s, t in recorded()), what="the caller's turn")
        wait_for(lambda: page.evaluate(INBOUND_ENERGY) > before + 1e-6, what="caller audio in the nurse's browser")
        after_handover = [s for i, s, t in recorded() if i > next(i for i, _, t in recorded()
                                                                     if t == phrases.handover["en"])]  # fmt: skip
        assert "bot" not in after_handover and {"nurse", "caller"} <= set(after_handover)
        page.click("#takeover-handback")
        expect(page.locator("#takeover")).to_have_attribute("data-state", "bot", timeout=15000)
        wait_for(lambda: any(t == phrases.hand_back["en"] for _, s, t in recorded()), what="the hand-back sentence")
        page.reload()
        expect(page.locator(".turn.speaker-nurse .speaker").first).to_have_text("Nurse")
        expect(page.locator("#history")).to_contain_text("nurse took over the live call")
        page.screenshot(path=str(SHOTS / "console-takeover.png"), full_page=True)
        assert errors == [], errors
        browser.close()

    on_server(line.inbound.put(CallerHangup()))
    wait_for(lambda: running.done(), what="the call to end")
    with database.session() as s:
        kinds = [r.kind for r in s.scalars(select(Review).where(Review.call_id == CALL_ID).order_by(Review.id))]
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.call_id == CALL_ID)))
    assert kinds == ["takeover", "handback"] and {"takeover", "handback"} <= actions


# the page's peer connections, kept by a wrapper the test installs before the page's scripts run
KEEP_PCS = """(() => { const P = window.RTCPeerConnection; window.__pcs = [];
  window.RTCPeerConnection = function (...args) { const pc = new P(...args); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = P.prototype; })()"""
INBOUND_ENERGY = """async () => { let e = 0;
  for (const pc of window.__pcs) { (await pc.getStats()).forEach(r => {
    if (r.type === "inbound-rtp" && r.kind === "audio") e += r.totalAudioEnergy || 0; }); }
  return e; }"""
