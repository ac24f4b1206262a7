"""A caller who talks over the greeting does not lose the emergency: in Debian's Chromium with a fake
microphone, the caller says "Hello!" and then describes crushing chest pain, starting 1-2 s into the
widget's greeting, over WebRTC and over the WebSocket transport; the red flag must be raised each time.

Runs per transport: CARECALL_TALK_OVER_RUNS (default 3; the issue's bar is 10)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Playwright

from tests.conftest import RunningServer, stop_server
from tests.web.widget.browser import chromium, hospital_page, start_call, start_widget_server, trace, wait_for
from tests.web.widget.speech import mic_wav

pytestmark = [pytest.mark.browser, pytest.mark.models, pytest.mark.timeout(900)]
RUNS = int(os.environ.get("CARECALL_TALK_OVER_RUNS", "3"))
INTO_S = 1.5  # the caller starts this long into the greeting
# The fake microphone plays from the click, and the greeting starts some seconds later (connection, first
# audio): each run's lead is the previous run's measured greeting delay (per transport) + INTO_S.
GREETING_DELAY_S: dict[str, float] = {}


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_widget_server(tmp_path_factory.mktemp("talk-over"))
    try:
        for _ in range(600):  # the warm start renders the greetings first: wait for them (its own report)
            warm = httpx.get(f"{server.base_url}/healthz", timeout=5).json().get("warm") or {}
            if warm.get("done") or warm.get("rendered", 0) >= 40:
                break
            time.sleep(0.5)
        yield server
    finally:
        stop_server(server.process)


AEC = os.environ.get("CARECALL_TALK_OVER_AEC", "on")  # "off": the widget's echo canceller off (experiment)


@pytest.mark.parametrize("run", range(RUNS))
# webrtc: with Chromium's echo cancellation on, the bot's remote track is the canceller's reference, and
# words said over the bot came out garbled (issue 12: 3/6, then 2/4 runs raised the red flag). The call now
# holds the bot's audio the moment the caller speaks over it (TurnTaking.barge_in_hold).
@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_red_flag_said_over_the_greeting_is_raised(pw: Playwright, product: RunningServer, tmp_path: Path,
                                                   transport: str, run: int) -> None:
    lead = round(GREETING_DELAY_S.get(transport, 4.0) + INTO_S, 1)
    wav = mic_wav(tmp_path, lead, "Hello!", 0.7,
                  "I have crushing chest pain spreading to my left arm, and I am sweating.", 30.0)
    with chromium(pw, wav) as browser:
        page = hospital_page(browser, product.base_url, lang="en", transport=transport)
        aec = "true" if AEC != "off" else "false"
        page.evaluate(f"document.querySelector('carecall-widget').carecall.echoCancellation = {aec}")
        clicked = page.evaluate("performance.now()")
        start_call(page)
        banner = page.locator("carecall-widget #cc-banner")
        try:
            banner.wait_for(state="visible", timeout=180_000)
        except Exception as exc:  # say what was heard instead
            heard = page.evaluate("[...document.querySelector('carecall-widget').shadowRoot"
                                  ".querySelectorAll('.captions p')].map(p => p.className + ': ' + p.textContent)")
            kinds = [m["type"] for _, m in trace(page)["messages"]]
            raise AssertionError(f"no red flag over {transport}; captions {heard}; messages {kinds}") from exc
        t = trace(page)
        speaking = [at for at, state in t["states"] if state == "speaking"]
        into_greeting = (clicked + lead * 1000 - speaking[0]) / 1000 if speaking else None
        if speaking:
            GREETING_DELAY_S[transport] = (speaking[0] - clicked) / 1000
        print(f"{transport} run {run}: caller started {into_greeting:.2f} s into the greeting"
              if into_greeting is not None else f"{transport} run {run}: no greeting state seen")
        assert "911" in banner.inner_text()
        red = [m for _, m in t["messages"] if m["type"] == "red_flag"]
        assert red and red[0]["red_flags"], red
        captions = wait_for(page, "[...document.querySelector('carecall-widget').shadowRoot"
                                  ".querySelectorAll('.captions p.caller')].map(p => p.textContent).join(' ')",
                            30, "the caller's caption")
        assert "chest" in captions.lower(), captions
