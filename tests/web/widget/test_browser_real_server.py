"""The widget against the whole product as `make demo` runs it (`carecall serve`: the triage brain,
Whisper, Piper and the Mandarin voice, the embedded LLM): an English red flag over WebRTC and a
Mandarin caller over the WebSocket fallback, in Debian's Chromium with a fake microphone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Playwright

from tests.conftest import RunningServer, stop_server
from tests.web.screenshots import screenshots_dir
from tests.web.widget.browser import chromium, hospital_page, start_call, start_widget_server, trace, wait_for
from tests.web.widget.speech import mic_wav

pytestmark = [pytest.mark.browser, pytest.mark.models, pytest.mark.timeout(600)]

SCREENSHOTS = screenshots_dir()


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The fake microphone speaks 14 s after the click, after the greeting (3.6 s) however long the
    # connection takes; a silence re-prompt 8 s after the greeting would fall on the caller's words, and
    # speech over the bot with echo cancellation on is issue 12's open defect, tested on its own
    # (test_talk_over_greeting.py). So no re-prompt in this module's first minute.
    server = start_widget_server(tmp_path_factory.mktemp("widget-product"),
                                 {"CARECALL_TURN_TAKING__SILENCE_REPROMPT_S": "60"})
    try:
        yield server
    finally:
        stop_server(server.process)


def captions(page) -> str:  # type: ignore[no-untyped-def]
    return page.evaluate("[...document.querySelector('carecall-widget').shadowRoot"
                         ".querySelectorAll('.captions p')].map(p => p.textContent).join('\\n')")


def test_english_red_flag_over_webrtc(pw: Playwright, product: RunningServer, tmp_path: Path) -> None:
    wav = mic_wav(tmp_path, 14.0, "I have crushing chest pain spreading to my left arm, and I am sweating.", 25.0)
    with chromium(pw, wav) as browser:
        page = hospital_page(browser, product.base_url, lang="en", transport="webrtc")
        start_call(page)
        banner = page.locator("carecall-widget #cc-banner")
        banner.wait_for(state="visible", timeout=180_000)  # a loaded 2-core machine
        assert "911" in banner.inner_text()
        text = captions(page)
        assert "chest" in text.lower() and "arm" in text.lower(), text
        messages = [m for _, m in trace(page)["messages"]]
        red = [m for m in messages if m["type"] == "red_flag"]
        assert red and red[0]["emergency_number"] == "911" and red[0]["red_flags"], red
        stats = page.evaluate("document.querySelector('carecall-widget').carecall.rtcStats()")
        assert stats["inbound"]["bytesReceived"] > 20_000


def test_mandarin_caller_over_the_websocket_fallback(pw: Playwright, product: RunningServer, tmp_path: Path) -> None:
    wav = mic_wav(tmp_path, 16.0, "我从昨天开始发烧，还一直咳嗽。", 25.0, lang="zh")
    with chromium(pw, wav) as browser:
        page = hospital_page(browser, product.base_url, lang="zh", transport="websocket")
        start_call(page, start_label="开始通话")
        text = wait_for(page, "[...document.querySelector('carecall-widget').shadowRoot"
                              ".querySelectorAll('.captions p.caller')].map(p => p.textContent).join(' ')",
                        180, "the caller's caption")
        assert "发烧" in text or "咳嗽" in text, text
        wait_for(page, "w.stats.botBytes > 100000", 60, "the bot's Mandarin speech")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "widget-zh.png"), full_page=True)
