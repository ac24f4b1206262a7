"""Driving Debian's Chromium with Playwright for the widget's browser tests: a fake microphone fed
from a WAV, a hospital page (served by Playwright itself, on another origin) embedding the widget with
its one script tag, and helpers that read the widget's state from inside its shadow root."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

from bench.harness import RunningServer, start_server
from tests.web.conftest import patient

CHROMIUM = "/usr/bin/chromium"
HOSPITAL = "http://hospital.localhost/"  # never on the network: Playwright answers it
FLAGS = [
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--allow-loopback-in-peer-connection",
    # real IPs in candidates; and the hospital page may call the CareCall server on loopback (in
    # production both are public hosts, where Local Network Access never applies)
    "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks,"
    "BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

WIDGET = "document.querySelector('carecall-widget').carecall"

# Runs in the page: records every call message and the bot's audio level every 50 ms, with times.
TRACE_JS = """() => {
  const host = document.querySelector('carecall-widget');
  window.__trace = { messages: [], levels: [], states: [] };
  host.addEventListener('carecall:message', (e) => window.__trace.messages.push([performance.now(), e.detail]));
  host.addEventListener('carecall:state', (e) => window.__trace.states.push([performance.now(), e.detail]));
  setInterval(() => window.__trace.levels.push([performance.now(), host.carecall.level()]), 50);
}"""


@contextlib.contextmanager
def chromium(pw: Playwright, mic_wav: Path | None, *, allow_mic: bool = True) -> Iterator[Browser]:
    args = list(FLAGS)
    if allow_mic:
        args.append("--use-fake-ui-for-media-stream")
    else:
        args.append("--deny-permission-prompts")
    if mic_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic_wav}%noloop")
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, ignore_default_args=["--mute-audio"])
    try:
        yield browser
    finally:
        browser.close()


def hospital_page(browser: Browser, server_url: str, *, lang: str = "en", transport: str = "auto",
                  rtc_timeout_ms: int = 8000, phone: bool = True, ignore_https_errors: bool = False) -> Page:
    """A hospital's page with the one-line embed, phone-sized. `ignore_https_errors` for a server
    behind a self-signed certificate (the cluster's nginx)."""
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>General Hospital</title><style>body{font-family:serif;color:purple}</style></head>"
        "<body><h1>General Hospital</h1><p>Not sure where to go? Talk to our nurse line.</p>"
        f"<script src='{server_url}/widget/embed.js' data-lang='{lang}' data-transport='{transport}' "
        f"data-rtc-timeout='{rtc_timeout_ms}'></script></body></html>"
    )
    context = patient(browser.new_context(viewport={"width": 390, "height": 844} if phone else None,
                                          ignore_https_errors=ignore_https_errors))
    page = context.new_page()
    page.route(HOSPITAL + "**", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(HOSPITAL)
    page.locator("carecall-widget").wait_for()
    return page


def start_call(page: Page, start_label: str = "Start call") -> None:
    page.evaluate(TRACE_JS)
    start = page.get_by_role("button", name=start_label)
    assert start.is_disabled()  # consent first
    page.get_by_role("checkbox").check()
    start.click()


def widget(page: Page, expr: str) -> Any:
    return page.evaluate(f"(async () => {{ const w = {WIDGET}; return {expr}; }})()")


def trace(page: Page) -> dict[str, Any]:
    return page.evaluate("window.__trace")


def wait_for(page: Page, predicate: str, timeout_s: float, what: str) -> Any:
    """Poll a JS expression (with `w` the widget and `t` the trace) until it is truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(f"(() => {{ const w = {WIDGET}; const t = window.__trace; return {predicate}; }})()")
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; messages: {[m[1]['type'] for m in trace(page)['messages']]}")


def notice_text(page: Page) -> str:
    notice = page.locator("carecall-widget #cc-notice")
    return notice.inner_text() if notice.is_visible() else ""


def start_widget_server(data_dir: Path, extra_env: dict[str, str] | None = None) -> RunningServer:
    """The real product as the widget's browser tests use it: loopback ICE, call tokens required."""
    return start_server(data_dir, extra_env={
        "CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]',
        "CARECALL_CALL_TOKEN_REQUIRED": "true",
        "CARECALL_SECRET_KEY": "browser-test-secret",
        **(extra_env or {}),
    })
