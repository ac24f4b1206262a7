"""The console in Debian's Chromium (Playwright): sign in, work the queue, open a call, play its
audio with the transcript following, override a disposition, see the audit entry, and watch a live
call raise a red-flag alert. Screenshots: console-*.png (tests/web/screenshots.py says where)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.records.simulate import triage_call
from tests.web.conftest import patient
from tests.web.console.conftest import CAMPAIGN, USERS, XSS_CALL, XSS_PATIENT
from tests.web.screenshots import screenshots_dir

pytestmark = [pytest.mark.browser]

SHOTS = screenshots_dir()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
]  # fmt: skip


class ServedConsole:
    def __init__(self, console) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.console = console
        self.server = uvicorn.Server(uvicorn.Config(console.app, port=self.port, log_level="warning", lifespan="off"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        asyncio.run(main())

    def __enter__(self) -> ServedConsole:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def publish(self, events) -> None:
        """Events into the real CallRecorder, on the server's loop, as the call hub would."""

        async def go() -> None:
            for event in events:
                await self.console.services.recorder.on_event(event)
                await asyncio.sleep(0.15)

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(30)


@pytest.fixture
def served(console) -> Iterator[ServedConsole]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install-system.sh)")
    with ServedConsole(console) as served:
        yield served


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--mute-audio"], headless=True
        )
        context = patient(browser.new_context(viewport={"width": 1400, "height": 900}))
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))  # alert(1) must never fire
        yield page
        assert errors == [], errors
        browser.close()


def sign_in(page, base: str, role: str) -> None:
    user, password = USERS[role]
    page.goto(f"{base}/console/")
    page.wait_for_url("**/console/login**")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_nurse_works_the_queue_plays_a_call_and_overrides(served, page):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = served.base
    sign_in(page, base, "nurse")

    rows = page.locator("table.queue tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-call-id", XSS_CALL)  # the red flag tops the queue
    expect(rows.first).to_contain_text("red flag")
    page.select_option("select[name=reviewed]", "no")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**reviewed=no**")
    expect(rows).to_have_count(3)
    page.screenshot(path=str(SHOTS / "console-queue.png"), full_page=True)

    rows.first.locator("a").click()
    page.wait_for_url(f"**/console/calls/{XSS_CALL}")
    # the caller's "<script>" is text on the page, not a script that ran
    expect(page.locator("#turn-1 .text")).to_contain_text("<script>alert(1)</script>")
    assert page.evaluate("document.querySelectorAll('main script').length") == 0

    # audio: jump to the caller's second turn; playback advances and the transcript follows
    page.locator("#turn-3 button.seek").click()
    page.wait_for_function("() => document.getElementById('player').currentTime > 6.2")
    expect(page.locator("#turn-3")).to_have_class(lambda_has("playing"))
    page.wait_for_function("() => document.getElementById('player').currentTime > 8.05", timeout=10000)
    expect(page.locator("#turn-4")).to_have_class(lambda_has("playing"))
    assert page.evaluate("document.getElementById('player').paused") is False
    page.evaluate("document.getElementById('player').pause()")
    page.screenshot(path=str(SHOTS / "console-call.png"), full_page=True)

    # override: the reason is required (the browser form refuses an empty one)
    page.select_option("#override-disposition", "emergency")
    page.click("#override-form button[type=submit]")
    assert page.url.endswith(XSS_CALL)
    page.fill("#override-reason", "Caller is already in our ED waiting room")
    page.click("#override-form button[type=submit]")
    page.wait_for_url("**#history")
    expect(page.locator("#disposition")).to_have_text("emergency")
    expect(page.locator("#history")).to_contain_text("changed the disposition from emergency_ambulance to emergency")
    page.click("#mark-reviewed")
    expect(page.locator("#history")).to_contain_text("marked the call reviewed")
    page.locator("#history").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "console-override.png"), full_page=True)

    # the admin sees it in the audit log
    page.click("form.logout button")
    page.wait_for_url("**/console/login")
    sign_in(page, base, "admin")
    page.click("text=Audit log")
    page.wait_for_url("**/console/audit")
    entry = page.locator("table.audit tbody tr", has_text="override_disposition")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("nina")
    expect(entry).to_contain_text("emergency_ambulance")
    # each load of the player fetches the recording from byte 0: one audit entry per load, none per seek
    expect(page.locator("table.audit tbody tr", has_text="play_recording").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "console-audit.png"), full_page=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_live_call_transcript_and_red_flag_alert(served, page):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, served.base, "nurse")
    page.click("text=Live calls")
    page.wait_for_url("**/console/live")
    expect(page.locator("#live-calls")).to_contain_text("No calls in progress")
    events = triage_call("live-call-1")
    served.publish(events[:-1])  # the call is still going
    card = page.locator("#call-live-call-1")
    expect(card).to_contain_text("I have chest pain going down my left arm <script>alert(1)</script>")
    expect(page.locator("#alerts .alert")).to_contain_text("chest_pain_radiating")
    expect(page.locator("#live-count")).to_have_text("1")
    page.screenshot(path=str(SHOTS / "console-live.png"), full_page=True)
    # a red flag alerts on any console page, not only the live view
    page.goto(f"{served.base}/console/")
    served.publish(triage_call("live-call-2")[:9])
    expect(page.locator("#alerts .alert")).to_contain_text("chest_pain_radiating")
    # ...and offers to take the call over from wherever the nurse is
    expect(page.locator("#alerts .alert a.take-over").last).to_have_attribute(
        "href", "/console/calls/live-call-2#takeover"
    )
    served.publish(events[-1:])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_nurse_opens_a_campaign_from_the_queue(served, page):
    """The queue's campaign filter leads to the campaign page: patients with masked numbers, each
    attempt's outcome, the escalated patient flagged, and a patient's markup shown as text."""
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, served.base, "nurse")
    page.select_option("select[name=campaign]", CAMPAIGN)
    page.click(".filters button[type=submit]")
    page.wait_for_url(f"**campaign={CAMPAIGN}**")
    page.click("#campaign-link")
    page.wait_for_url(f"**/console/campaigns/{CAMPAIGN}")
    rows = page.locator("table.patients tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first.locator(".patient-name")).to_contain_text(XSS_PATIENT)  # text, not an <img>
    assert page.evaluate("document.querySelectorAll('main img').length") == 0
    expect(rows.first).to_contain_text("+*********0001")
    expect(rows.first.locator("li.attempt")).to_have_count(2)
    expect(page.locator("tr", has_text="Zhao Min")).to_contain_text("escalated")
    page.screenshot(path=str(SHOTS / "console-campaign.png"), full_page=True)
    page.select_option("select[name=outcome]", "busy")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**outcome=busy**")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Li Lei")
    rows.first.locator("text=busy").first.wait_for()
    page.goto(f"{served.base}/console/campaigns/{CAMPAIGN}?outcome=completed")
    page.locator("tr", has_text="Zhao Min").locator("a", has_text="call record").click()
    page.wait_for_url(f"**/console/calls/{XSS_CALL}")
    expect(page.locator("#red-flags")).to_contain_text("chest_pain_radiating")


def lambda_has(cls: str):
    import re

    return re.compile(rf"(^|\s){cls}(\s|$)")
