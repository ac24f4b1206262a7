"""The console's pages and actions through HTTP: CSRF rejection, a caller's script or SQL shown as
text, the queue, the call page, audio with range requests, nurse actions on the history, exports,
the audit trail of every view and change, and the live feed."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from markupsafe import escape

from records.models import AuditEvent, Call, Review
from tests.records.simulate import SQL, XSS, triage_call
from tests.web.console.conftest import XSS_CALL, csrf_of

ACTIONS = [
    ("review", {}),
    ("override", {"disposition": "emergency", "reason": "walked in"}),
    ("note", {"note": "hello"}),
    ("callback", {"detail": "9am"}),
]


@pytest.mark.parametrize(("action", "form"), ACTIONS)
@pytest.mark.parametrize("token", ["missing", "wrong", "other-session"])
def test_posts_without_the_sessions_csrf_token_are_refused(console, action, form, token):
    nurse = console.client("nurse")
    data = dict(form)
    if token == "wrong":
        data["csrf_token"] = "0" * 64
    elif token == "other-session":
        data["csrf_token"] = csrf_of(console.client("admin"))  # valid, but for someone else's session
    r = nurse.post(f"/console/calls/{XSS_CALL}/{action}", data=data, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    with console.services.database.session() as s:
        assert s.query(Review).count() == 0
        call = s.get(Call, XSS_CALL)
        assert call.reviewed_at is None and call.override_disposition is None


def test_admin_posts_need_csrf_too(console):
    admin = console.client("admin")
    r = admin.post("/console/users", data={"username": "x", "password": "long-password", "role": "admin"})
    assert r.status_code == 403
    r = admin.post("/console/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    assert admin.get("/console/", follow_redirects=False).status_code == 200


def test_a_callers_script_and_sql_are_shown_as_text(console):
    nurse = console.client("nurse")
    page = nurse.get(f"/console/calls/{XSS_CALL}")
    assert page.status_code == 200
    assert XSS not in page.text and str(escape(XSS)) in page.text
    assert str(escape(SQL)) in page.text
    assert page.text.count("<script") == 1  # only the console's own script tag
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-store"
    # the SQL fragment was stored and shown, and the tables are all still there
    queue = nurse.get("/console/", params={"department": SQL, "disposition": SQL, "campaign": SQL})
    assert queue.status_code == 200 and "No calls match" in queue.text
    assert nurse.get("/console/").text.count("/console/calls/") == 3
    # a note with markup stays text as well
    nurse.post(
        f"/console/calls/{XSS_CALL}/note", data={"csrf_token": csrf_of(nurse), "note": '<img src=x onerror="alert(2)">'}
    )
    assert "<img src=x" not in nurse.get(f"/console/calls/{XSS_CALL}").text


def test_queue_lists_red_flags_first_and_filters(console):
    nurse = console.client("nurse")
    text = nurse.get("/console/").text
    order = [text.index(f'data-call-id="{cid}"') for cid in (XSS_CALL, "quiet-consult", "quiet-followup")]
    assert order == sorted(order)
    assert "⚑ red flag" in text
    followups = nurse.get("/console/", params={"mode": "followup"}).text
    assert 'data-call-id="quiet-followup"' in followups and XSS_CALL not in followups
    assert 'data-call-id="quiet-followup"' in nurse.get("/console/", params={"campaign": "cardio-dec"}).text
    flagged = nurse.get("/console/", params={"red_flags": "1"}).text
    assert XSS_CALL in flagged and "quiet-consult" not in flagged
    assert nurse.get("/console/", params={"date_from": "not-a-date"}).status_code == 200


def test_call_page_shows_transcript_findings_sbar_and_latency(console):
    page = console.client("nurse").get(f"/console/calls/{XSS_CALL}").text
    assert 'id="turn-0"' in page and 'data-start="2.0"' in page
    assert "Caller" in page and "CareCall" in page
    assert "chest_pain_radiating" in page and "Emergency" in page and "emergency_ambulance" in page
    assert "Possible acute coronary syndrome." in page  # SBAR
    assert "voice-to-voice 932 ms" in page
    assert "chest_pain" in page and 'data-seek-turn="1"' in page  # finding linked to its words
    assert f'src="/console/calls/{XSS_CALL}/audio"' in page
    assert console.client("nurse").get("/console/calls/nope").status_code == 404


def test_audio_supports_range_requests(console):
    nurse = console.client("nurse")
    whole = nurse.get(f"/console/calls/{XSS_CALL}/audio")
    assert whole.status_code == 200 and whole.content[:4] == b"RIFF" and whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    part = nurse.get(f"/console/calls/{XSS_CALL}/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 1000-1999/{size}"
    assert part.content == whole.content[1000:2000]
    tail = nurse.get(f"/console/calls/{XSS_CALL}/audio", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]
    open_end = nurse.get(f"/console/calls/{XSS_CALL}/audio", headers={"Range": f"bytes={size - 10}-"})
    assert open_end.content == whole.content[-10:]
    bad = nurse.get(f"/console/calls/{XSS_CALL}/audio", headers={"Range": f"bytes={size + 5}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"
    assert nurse.get("/console/calls/quiet-consult/audio").status_code == 404
    with console.services.database.session() as s:
        plays = s.query(AuditEvent).filter_by(action="play_recording").count()
    assert plays == 1  # one playback; its seeks (ranges not at 0) are not new playbacks


def test_override_needs_a_reason_and_actions_show_on_history(console):
    nurse = console.client("nurse")
    token = csrf_of(nurse)
    url = f"/console/calls/{XSS_CALL}"
    r = nurse.post(f"{url}/override", data={"csrf_token": token, "disposition": "emergency", "reason": "  "})
    assert r.status_code == 400 and "A reason is required" in r.text
    r = nurse.post(f"{url}/override", data={"csrf_token": token, "disposition": "bogus", "reason": "x"})
    assert r.status_code == 400
    for action, form in ACTIONS:
        r = nurse.post(f"{url}/{action}", data={"csrf_token": token, **form}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("#history")
    page = nurse.get(url).text
    history = page[page.index('id="history"') :]
    assert "changed the disposition from emergency_ambulance to emergency: walked in" in history
    assert (
        "marked the call reviewed" in history and "noted: hello" in history and "requested a callback: 9am" in history
    )
    assert 'id="disposition">emergency<' in page
    queue = nurse.get("/console/", params={"reviewed": "yes"}).text
    assert XSS_CALL in queue and "callback" in queue


def test_every_view_and_change_is_audited_and_admins_can_read_it(console):
    nurse = console.client("nurse")
    nurse.get("/console/")
    nurse.get(f"/console/calls/{XSS_CALL}")
    nurse.get(f"/console/calls/{XSS_CALL}/export.csv")
    nurse.post(
        f"/console/calls/{XSS_CALL}/override",
        data={"csrf_token": csrf_of(nurse), "disposition": "consultation_24", "reason": "seen by GP"},
    )
    with console.services.database.session() as s:
        actions = [(e.username, e.action, e.call_id) for e in s.query(AuditEvent).order_by(AuditEvent.id)]
    assert ("nina", "login", None) in actions
    assert ("nina", "view_queue", None) in actions
    assert ("nina", "view_call", XSS_CALL) in actions
    assert ("nina", "export", XSS_CALL) in actions
    assert ("nina", "override_disposition", XSS_CALL) in actions
    admin = console.client("admin")
    log = admin.get("/console/audit").text
    assert "override_disposition" in log and "nina" in log and "consultation_24" in log
    assert "nina" in admin.get("/console/audit", params={"call": XSS_CALL}).text
    call_page = admin.get(f"/console/calls/{XSS_CALL}").text
    assert "Audit (admin)" in call_page and "Audit (admin)" not in nurse.get(f"/console/calls/{XSS_CALL}").text
    # nobody edits it: there is no route to, and the database refuses
    with pytest.raises(Exception, match="append-only"), console.services.database.session() as s:
        s.query(AuditEvent).delete()


def test_exports(console):
    nurse = console.client("nurse")
    j = nurse.get(f"/console/calls/{XSS_CALL}/export.json")
    assert j.headers["content-type"].startswith("application/json") and "attachment" in j.headers["content-disposition"]
    assert json.loads(j.text)["turns"][1]["text"].endswith(XSS)
    rows = list(csv.DictReader(io.StringIO(nurse.get(f"/console/calls/{XSS_CALL}/export.csv").text)))
    assert len(rows) == 5 and rows[0]["speaker"] == "bot"
    fhir = nurse.get(f"/console/calls/{XSS_CALL}/export.fhir.json")
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    assert json.loads(fhir.text)["resourceType"] == "Bundle"
    assert nurse.get(f"/console/calls/{XSS_CALL}/export.xml").status_code == 404


def test_admin_manages_users(console):
    admin = console.client("admin")
    token = csrf_of(admin)
    r = admin.post("/console/users", data={"csrf_token": token, "username": "<b>bo</b>", "password": "long-password",
                                           "role": "nurse"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    page = admin.get("/console/users").text
    assert "&lt;b&gt;bo&lt;/b&gt;" in page
    r = admin.post("/console/users", data={"csrf_token": token, "username": "x", "password": "short", "role": "nurse"})
    assert r.status_code == 400 and "at least 8" in r.text
    me = console.user_ids["admin"]
    r = admin.post(f"/console/users/{me}", data={"csrf_token": token, "role": "nurse", "active": "yes"})
    assert r.status_code == 400 and "yourself" in r.text


async def test_live_feed_streams_calls_and_red_flags(console):
    from web.console import media

    feed = console.services.feed

    class FakeRequest:
        async def is_disconnected(self):
            return False

    response = media.sse(feed, FakeRequest(), heartbeat_s=0.05)
    body = response.body_iterator
    assert (await anext(body)).startswith(b"retry")
    assert b'"type": "snapshot"' in await anext(body)
    recorder = console.services.recorder
    frames = []
    for event in triage_call("live-1")[:-1]:
        await recorder.on_event(event)
    while True:
        frame = await asyncio.wait_for(anext(body), 1)
        if frame.startswith(b":"):
            break
        frames.append(frame.decode())
    await body.aclose()
    await recorder.aclose()
    assert frames[0].startswith("event: call_started")
    red = next(f for f in frames if f.startswith("event: red_flag"))
    assert "chest_pain_radiating" in red
    assert feed.subscriber_count == 0


def test_admin_sees_settings_without_secrets(console):
    page = console.client("admin").get("/console/settings")
    assert page.status_code == 200
    assert "recording_retention_days" in page.text and "test-secret-key" not in page.text
    assert "secret_key" not in page.text and "llm_api_key" not in page.text
