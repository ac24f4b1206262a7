"""The widget in a real browser (Debian Chromium, fake microphone fed from a WAV) against the real
app: server.create_app with the real call loop, Whisper and Piper, and a scripted dialogue (see
scripted_server.py). Both transports: WebRTC (aiortc) and the WebSocket fallback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Playwright

from bench.harness import RELAXED_BUDGET, stop_server
from tests.conftest import poll
from tests.web.screenshots import screenshots_dir
from tests.web.widget.browser import chromium, hospital_page, notice_text, start_call, trace, wait_for, widget
from tests.web.widget.speech import mic_wav

pytestmark = [pytest.mark.browser, pytest.mark.models, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = screenshots_dir()
TRANSPORTS = ["webrtc", "websocket"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_server(self.process, sig)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_scripted_server(data_dir: Path) -> Server:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **RELAXED_BUDGET,
        **os.environ,
        "CARECALL_DATA_DIR": str(data_dir),
        "CARECALL_SECRET_KEY": "browser-test-secret",
        "CARECALL_CALL_TOKEN_REQUIRED": "true",  # the WebSocket path spends widget tokens too
        "CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]',  # loopback only, both ways
        "CARECALL_MAX_CONCURRENT_CALLS": "3",
    }
    log = data_dir / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.web.widget.scripted_server", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_scripted_server(tmp_path_factory.mktemp("widget-server"))
    try:
        yield srv
    finally:
        srv.stop()
        log = srv.log.read_text(errors="replace")
        # aiortc's own SCTP tasks can log this when a browser vanishes mid-send; anything else is ours
        noise = "ConnectionError: Cannot send encrypted data, not connected"
        problems = [b for b in log.split("Task exception was never retrieved") if "Traceback" in b and noise not in b]
        assert not problems, problems[-1][-4000:]


@pytest.fixture(autouse=True)
def lines_free(request: pytest.FixtureRequest) -> None:
    """Each test starts with every line of the shared server free: the calls of the test before end when
    the server sees their browser go, which on a loaded machine can come after the next test's offer (the
    server then answers it 503 busy, and a test about fallback or barge-in sees a refusal instead)."""
    if "server" not in request.fixturenames:
        return
    srv: Server = request.getfixturevalue("server")

    def free() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{srv.url}/healthz/ready", timeout=10).json().get("active") == 0
        return False

    poll(free, 120, "the lines of the calls before free")


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mic")
    return {
        # the caller waits for the greeting to end (no double talk), then speaks
        "headache": mic_wav(d, 16.0, "I have had a bad headache and a fever since yesterday morning.", 25.0),
        # the caller talks over the greeting (barge-in)
        "barge": mic_wav(d, 6.0, "Sorry, wait a moment, I need to tell you something about my symptoms.", 20.0),
        "chest": mic_wav(d, 2.5, "I have crushing chest pain spreading to my left arm, and I am sweating.", 20.0),
        "silence": mic_wav(d, 30.0),
    }


def levels_between(page: Page, start_ms: float, end_ms: float) -> list[float]:
    return [lvl for t, lvl in trace(page)["levels"] if start_ms <= t <= end_ms]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_caller_is_heard_and_the_bot_is_heard(
    pw: Playwright, server: Server, wavs: dict[str, Path], transport: str
) -> None:
    with chromium(pw, wavs["headache"]) as browser:
        page = hospital_page(browser, server.url, transport=transport)
        start_call(page)
        wait_for(page, f"w.stats.transport === '{transport}'", 20, f"a {transport} connection")
        assert not notice_text(page)
        mic = widget(page, "w.call.mic.getAudioTracks()[0].getSettings()")
        assert mic["echoCancellation"] is True and mic["noiseSuppression"] is True

        # the caller's words come back as a caption with the key words
        caption = wait_for(page, "[...document.querySelector('carecall-widget').shadowRoot"
                                 ".querySelectorAll('.captions p.caller')].map(p => p.textContent).join(' ')",
                           120, "the caller's caption")
        assert "headache" in caption.lower() and "fever" in caption.lower(), caption

        # the bot answers: its audio reaches the browser, audibly
        wait_for(page, "t.messages.filter(m => m[1].type === 'transcript' && m[1].speaker === 'bot').length >= 2",
                 90, "the bot's reply")
        if transport == "webrtc":
            stats = widget(page, "await w.rtcStats()")
            assert stats["inbound"]["bytesReceived"] > 20_000, stats
            assert stats["outbound"]["bytesSent"] > 20_000, stats
        else:
            assert widget(page, "w.stats.botBytes") > 100_000
            assert widget(page, "w.stats.micFrames") > 100
        assert max(lvl for _, lvl in trace(page)["levels"]) > 0.05

        # hanging up ends the call, with the outcome in plain words
        page.get_by_role("button", name="End call").click()
        outcome = page.locator("carecall-widget #cc-outcome")
        outcome.wait_for(state="visible", timeout=15_000)
        text = outcome.inner_text()
        assert "See a doctor within 24 hours" in text and "General medicine" in text, text
        assert "911" in text  # the safety net
        assert page.get_by_role("button", name="Start again").is_visible()


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_barge_in_silences_the_bot_at_once(
    pw: Playwright, server: Server, wavs: dict[str, Path], transport: str
) -> None:
    with chromium(pw, wavs["barge"]) as browser:
        page = hospital_page(browser, server.url, transport=transport)
        start_call(page)
        wait_for(page, "t.messages.some(m => m[1].type === 'clear')", 60, "the barge-in")
        # until the levels cover the window checked below (sampled every 50 ms, later on a loaded machine)
        wait_for(page, "(() => { const c = t.messages.find(m => m[1].type === 'clear')[0];"
                       " const again = t.messages.find(m => m[0] > c && m[1].type === 'state'"
                       " && m[1].state === 'speaking');"
                       " const end = Math.min(c + 1500, again ? again[0] - 100 : Infinity);"
                       " return t.levels.some(l => l[0] >= end); })()",
                 30, "the levels after the barge-in")
        messages = trace(page)["messages"]
        cleared = next(t for t, m in messages if m["type"] == "clear")
        talking = levels_between(page, cleared - 2500, cleared - 100)
        assert talking and max(talking) > 0.02, talking  # the bot was audible before the caller cut in
        # The interrupted turn must fall silent. A NEW reply (the caller paused and the bot answered)
        # may legitimately start in this window, so the window ends where the bot starts speaking again.
        next_reply = next((t for t, m in messages if t > cleared and m["type"] == "state"
                           and m.get("state") == "speaking"), cleared + 1600)
        after = levels_between(page, cleared + 400, min(cleared + 1500, next_reply - 100))
        assert after or next_reply < cleared + 600, "no audio level samples after the barge-in"
        assert max(after, default=0.0) < 0.003, (after, [(round(t - cleared), m.get("type"), m.get("state"))
                                                      for t, m in messages if t > cleared][:10])
        wait_for(page, "t.messages.some(m => m[1].type === 'transcript' && m[1].speaker === 'bot')", 30,
                 "the interrupted turn")
        bot = [m for _, m in trace(page)["messages"] if m["type"] == "transcript" and m["speaker"] == "bot"]
        assert bot[0]["interrupted"] is True
        caption = page.locator("carecall-widget .captions p.bot").first.inner_text()
        assert "(interrupted)" in caption and "Please tell me what is wrong today" not in caption


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_red_flag_shows_the_emergency_banner_at_once(
    pw: Playwright, server: Server, wavs: dict[str, Path], transport: str
) -> None:
    with chromium(pw, wavs["chest"]) as browser:
        page = hospital_page(browser, server.url, transport=transport)
        start_call(page)
        banner = page.locator("carecall-widget #cc-banner")
        banner.wait_for(state="visible", timeout=180_000)  # an event wait; a loaded 2-core machine is slow
        assert banner.get_attribute("role") == "alert"
        assert "Call 911 now" in banner.inner_text()
        call = page.get_by_role("link", name="Call 911")
        assert call.get_attribute("href") == "tel:911"
        red = [m for _, m in trace(page)["messages"] if m["type"] == "red_flag"]
        assert red
        if transport == "webrtc":  # on /ws/call the number came with the call token (server-side too)
            assert red[0]["emergency_number"] == "911"
        # the banner came with the red flag, before the bot finished saying anything about it
        wait_for(page, "t.messages.some(m => m[1].type === 'transcript' && m[1].speaker === 'bot' "
                       "&& /ambulance/.test(m[1].text))", 60, "the bot's emergency advice")
        if transport == "webrtc":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "widget.png"), full_page=True)


def test_when_webrtc_cannot_connect_the_widget_falls_back_to_websocket_and_says_so(
    pw: Playwright, server: Server, wavs: dict[str, Path]
) -> None:
    def dead_candidates(sdp: str) -> str:
        """Every candidate pointing at a loopback port nobody listens on."""
        dead = free_port()
        lines = []
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:"):
                parts = line.split(" ")
                parts[5] = str(dead)
                line = " ".join(parts)
            lines.append(line)
        return "\r\n".join(lines)

    def break_ice(route) -> None:  # type: ignore[no-untyped-def]
        # both ways, or a peer-reflexive candidate would still find the way
        offer = json.loads(route.request.post_data)
        offer["sdp"] = dead_candidates(offer["sdp"])
        response = route.fetch(post_data=json.dumps(offer))
        answer = response.json()
        if "sdp" not in answer:  # refused: let the widget see the server's own answer (the test then says why)
            route.fulfill(response=response)
            return
        answer["sdp"] = dead_candidates(answer["sdp"])
        route.fulfill(response=response, json=answer)

    with chromium(pw, wavs["silence"]) as browser:
        page = hospital_page(browser, server.url, transport="auto", rtc_timeout_ms=3000)
        page.route("**/widget/rtc/offer", break_ice)
        start_call(page)
        wait_for(page, "w.stats.transport === 'websocket'", 30, "the fallback connection")
        assert widget(page, "w.stats.fellBack") is True
        assert "switched to a backup connection" in notice_text(page)
        # and the call goes on over the fallback: the greeting is heard
        wait_for(page, "w.stats.botBytes > 50000", 60, "bot audio over the fallback")
        wait_for(page, "w.level() > 0.01 || t.levels.some(l => l[1] > 0.01)", 30, "an audible greeting")


def test_a_denied_microphone_gets_a_plain_message(pw: Playwright, server: Server) -> None:
    with chromium(pw, None, allow_mic=False) as browser:
        page = hospital_page(browser, server.url)
        start_call(page)
        wait_for(page, "w.state === 'idle'", 15, "the widget to give up")
        assert "can't use your microphone" in notice_text(page)
        assert page.get_by_role("button", name="Start call").is_enabled()


def test_an_unreachable_service_gets_a_plain_message(pw: Playwright, server: Server, wavs: dict[str, Path]) -> None:
    with chromium(pw, wavs["silence"]) as browser:
        page = hospital_page(browser, server.url)
        page.route("**/widget/token", lambda route: route.abort("connectionrefused"))
        start_call(page)
        wait_for(page, "w.state === 'idle'", 15, "the widget to give up")
        assert "couldn't connect" in notice_text(page)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_restart_mid_call_is_explained(
    pw: Playwright, wavs: dict[str, Path], tmp_path: Path, transport: str
) -> None:
    own = start_scripted_server(tmp_path / "server")
    try:
        with chromium(pw, wavs["silence"]) as browser:
            page = hospital_page(browser, own.url, transport=transport)
            start_call(page)
            wait_for(page, "w.state === 'speaking'", 60, "the greeting")
            own.stop()
            wait_for(page, "w.state === 'idle'", 30, "the widget to notice")
            assert "service restarted" in notice_text(page)
            assert page.get_by_role("button", name="Start call").is_enabled()
    finally:
        own.stop()


def test_keyboard_screen_reader_and_phone_layout(pw: Playwright, server: Server) -> None:
    with chromium(pw, None) as browser:
        page = hospital_page(browser, server.url, lang="zh")
        root = page.locator("carecall-widget")
        # keyboard: Tab reaches the language switch, the consent box and the Start button, in order
        page.keyboard.press("Tab")
        assert page.evaluate("document.querySelector('carecall-widget').shadowRoot.activeElement.textContent") == "中文"
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # English
        assert root.locator("#cc-title").inner_text() == "CareCall nurse line"
        assert page.get_by_role("button", name="English").get_attribute("aria-pressed") == "true"
        assert root.locator(".cc").get_attribute("lang") == "en"
        page.keyboard.press("Tab")
        page.keyboard.press("Space")  # consent
        assert page.get_by_role("checkbox", name="I understand and agree to the recording").is_checked()
        assert page.get_by_role("button", name="Start call").is_enabled()
        # screen readers: state is a status region; finished captions go to a polite log; partials
        # are shown but not announced; alarms are alerts
        assert root.locator("[role=status]").get_attribute("aria-live") == "polite"
        log = root.locator("[role=log]")
        assert log.get_attribute("aria-live") == "polite" and log.get_attribute("aria-label") == "Call captions"
        page.evaluate("""() => {
            const w = document.querySelector('carecall-widget').carecall;
            w.call = { cleanup: [], closed: false };
            const say = (m) => w.onMessage(w.call, JSON.stringify(m));
            say({type: 'state', state: 'listening'});
            say({type: 'partial', text: 'my chest'});
        }""")
        assert root.locator("#cc-state").inner_text() == "Listening — go ahead"
        assert root.locator("#cc-partial").inner_text() == "my chest"
        assert root.locator("#cc-partial").get_attribute("aria-hidden") == "true"
        page.evaluate("""() => {
            const w = document.querySelector('carecall-widget').carecall;
            const say = (m) => w.onMessage(w.call, JSON.stringify(m));
            say({type: 'transcript', speaker: 'caller', text: 'my chest hurts <b>a lot</b>', interrupted: false});
            say({type: 'red_flag', level: 'emergency_ambulance', red_flags: ['chest_pain'], emergency_number: '999'});
            say({type: 'outcome', disposition: 'emergency_ambulance', department: 'emergency',
                 department_name: 'Emergency department'});
            say({type: 'ended', reason: 'red_flag', result: {}});
        }""")
        assert root.locator("#cc-partial").inner_text() == ""
        assert "my chest hurts <b>a lot</b>" in log.inner_text()  # text, never markup
        assert root.locator("[role=alert]#cc-banner").inner_text().startswith("This may be an emergency. Call 999 now.")
        assert page.get_by_role("link", name="Call 999").get_attribute("href") == "tel:999"
        outcome = root.locator("#cc-outcome")
        assert "Call an ambulance now." in outcome.inner_text()
        assert "Department: Emergency department" in outcome.inner_text()
        assert "call 999" in outcome.inner_text()
        assert page.evaluate("document.querySelector('carecall-widget').shadowRoot.activeElement.id") == "cc-outcome"
        # the hospital's CSS stays out of the widget, and the widget fits a phone without sideways scrolling
        assert root.locator("#cc-title").evaluate("e => getComputedStyle(e).color") != "rgb(128, 0, 128)"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = root.locator("#cc-talk").bounding_box()
        assert box and box["height"] >= 44


def test_the_standalone_page_works_under_its_content_security_policy(
    pw: Playwright, server: Server, wavs: dict[str, Path]
) -> None:
    with chromium(pw, wavs["silence"]) as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "404" not in m.text else None)
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
        response = page.goto(f"{server.url}/widget")
        assert response is not None and "default-src 'self'" in response.headers["content-security-policy"]
        assert page.locator("carecall-widget #cc-title").inner_text() == "CareCall 智能导诊"
        page.get_by_role("button", name="English").click()  # the scripted server speaks English only
        start_call(page)
        wait_for(page, "w.stats.transport === 'webrtc' && w.state === 'speaking'", 60, "the greeting")
        page.get_by_role("button", name="End call").click()
        wait_for(page, "w.state === 'ended'", 15, "the end of the call")
        assert not problems, problems


def test_on_the_websocket_too_a_token_opens_one_call_and_nothing_else(server: Server) -> None:
    from websockets.sync.client import connect

    def start(token: str | None) -> tuple[dict, int | None]:  # type: ignore[type-arg]
        with connect(server.url.replace("http", "ws") + "/ws/call") as ws:
            ws.send(json.dumps({"type": "start", "language": "en", "sample_rate": 16000, "token": token}))
            first = json.loads(ws.recv(timeout=20))
            with contextlib.suppress(Exception):
                ws.send(json.dumps({"type": "end"}))
                while True:
                    ws.recv(timeout=10)
            return first, ws.close_code

    token = httpx.post(f"{server.url}/widget/token", json={"lang": "en"}).json()["token"]
    assert start(token)[0]["type"] == "started"
    for bad in (token, None, token[:-3] + "abc"):
        first, code = start(bad)
        assert first["type"] == "error" and first["code"] == "unauthorised", first
        assert code == 1008
