"""Live takeover of a widget call on the whole product (`carecall serve`: Whisper, Piper, the triage
brain): the caller is the patient widget in one Chromium, the nurse the console in another, each with
a fake microphone playing real speech in a loop. The nurse takes over: the bot says its handover
sentence and nothing more, each side receives the other's audio over WebRTC, the nurse's words are
transcribed into the record as nurse turns, and she hands the call back."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Playwright

from tests.conftest import RunningServer, add_user, poll, start_server, stop_server
from tests.web.conftest import patient
from tests.web.console.test_takeover_browser import INBOUND_ENERGY, KEEP_PCS
from tests.web.screenshots import screenshots_dir
from tests.web.widget.browser import CHROMIUM, FLAGS, hospital_page, start_call
from tests.web.widget.speech import mic_wav
from web.console.takeover import load_phrases

pytestmark = [pytest.mark.browser, pytest.mark.models, pytest.mark.timeout(600)]

SHOTS = screenshots_dir()
NURSE = ("nadia", "nurse-pass-7")


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("takeover-product"),
        extra_env={"CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]', "CARECALL_SECRET_KEY": "takeover-test-secret"},
    )
    try:
        add_user(server, *NURSE)
        yield server
    finally:
        stop_server(server.process)


def nurse_takes_over(browser, base_url: str, call_id: str):  # type: ignore[no-untyped-def]
    """The nurse signs in on the call's page and takes the call over; her page, once she has it."""
    context = patient(browser.new_context(viewport={"width": 1400, "height": 900}))
    context.add_init_script(KEEP_PCS)
    nurse = context.new_page()
    nurse.goto(f"{base_url}/console/login?next=/console/calls/{call_id}")
    nurse.fill("input[name=username]", NURSE[0])
    nurse.fill("input[name=password]", NURSE[1])
    nurse.click("button[type=submit]")
    nurse.wait_for_url(f"**/console/calls/{call_id}")
    nurse.click("#takeover-start")
    nurse.locator("#takeover[data-state=nurse]").wait_for(timeout=60_000)
    return nurse


@contextlib.contextmanager
def looping_browser(pw: Playwright, wav: Path):
    """Chromium whose fake microphone plays `wav` over and over (a person who keeps talking)."""
    args = [*FLAGS, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"]
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, ignore_default_args=["--mute-audio"])
    try:
        yield browser
    finally:
        browser.close()


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as c:
        return c.execute(sql, args).fetchall()


def test_nurse_takes_over_a_widget_call(pw: Playwright, product: RunningServer, tmp_path: Path) -> None:
    db = product.data_dir / "carecall.db"
    phrases = load_phrases()
    caller_wav = mic_wav(tmp_path, 4.0, "I feel dizzy when I stand up.", 7.0)
    nurse_wav = mic_wav(tmp_path, 2.0, "Hello, this is the nurse speaking. Can you hear me?", 6.0)
    with looping_browser(pw, caller_wav) as caller_browser, looping_browser(pw, nurse_wav) as nurse_browser:
        caller = hospital_page(caller_browser, product.base_url, lang="en", transport="webrtc")
        caller.context.add_init_script(KEEP_PCS)
        caller.reload()
        caller.locator("carecall-widget").wait_for()
        start_call(caller)
        call_id = poll(lambda: rows(db, "SELECT id FROM calls WHERE status = 'in_progress'"), 120, "a live call")[0][0]
        poll(lambda: rows(db, "SELECT 1 FROM turns WHERE call_id = ? AND speaker = 'bot'", call_id), 180, "greeting")

        nurse = nurse_takes_over(nurse_browser, product.base_url, call_id)

        handover = poll(lambda: rows(db, "SELECT idx FROM turns WHERE call_id = ? AND text = ?", call_id,
                                     phrases.handover["en"]), 120, "the handover sentence")[0][0]  # fmt: skip
        heard_before = caller.evaluate(INBOUND_ENERGY)
        said = poll(lambda: rows(db, "SELECT idx, text FROM turns WHERE call_id = ? AND speaker = 'nurse'", call_id),
                    180, "a nurse turn")  # fmt: skip
        assert "nurse" in said[0][1].lower(), said
        poll(lambda: caller.evaluate(INBOUND_ENERGY) > heard_before + 1e-4, 60, "the nurse's voice at the caller")
        nurse_heard = nurse.evaluate(INBOUND_ENERGY)
        poll(lambda: rows(db, "SELECT 1 FROM turns WHERE call_id = ? AND speaker = 'caller' AND idx > ?", call_id,
                          handover), 180, "the caller's words after the handover")  # fmt: skip
        poll(lambda: nurse.evaluate(INBOUND_ENERGY) > nurse_heard + 1e-4, 60, "the caller's voice at the nurse")
        after = rows(db, "SELECT speaker FROM turns WHERE call_id = ? AND idx > ?", call_id, handover)
        assert "bot" not in {s for (s,) in after}, after  # the bot stayed quiet
        nurse.click("#takeover-handback")
        nurse.locator("#takeover[data-state=bot]").wait_for(timeout=30_000)
        poll(lambda: rows(db, "SELECT 1 FROM turns WHERE call_id = ? AND text = ?", call_id, phrases.hand_back["en"]),
             120, "the hand-back sentence")  # fmt: skip
        nurse.reload()
        nurse.locator(".turn.speaker-nurse").first.wait_for()
        SHOTS.mkdir(parents=True, exist_ok=True)
        nurse.screenshot(path=str(SHOTS / "console-takeover-widget.png"), full_page=True)
    kinds = [k for (k,) in rows(db, "SELECT kind FROM reviews WHERE call_id = ? ORDER BY id", call_id)]
    assert kinds == ["takeover", "handback"]
    actions = {a for (a,) in rows(db, "SELECT action FROM audit_events WHERE call_id = ?", call_id)}
    assert {"takeover", "handback"} <= actions
