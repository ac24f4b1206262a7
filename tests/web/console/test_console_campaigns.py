"""Campaign pages of the console through HTTP (SQLite and PostgreSQL): counts on the list, a
campaign's patients with masked numbers and every attempt's outcome linked to its call record,
the outcome filter, a patient's markup shown as text, admin create / CSV import / pause / resume
with CSRF, import errors with their line numbers and nothing half-imported, and the audit trail."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from records.models import AuditEvent
from telephony.campaigns import Campaign, Contact, claim_due
from tests.web.console.conftest import CAMPAIGN, XSS_CALL, XSS_PATIENT, csrf_of

DETAIL = f"/console/campaigns/{CAMPAIGN}"


def contacts(console) -> int:
    with console.services.database.session() as s:
        return s.query(Contact).filter_by(campaign_id=CAMPAIGN).count()


def actions(console) -> list[tuple[str, str, dict]]:
    with console.services.database.session() as s:
        return [(e.username, e.action, e.detail) for e in s.query(AuditEvent).order_by(AuditEvent.id)]


def upload(client, csv_text: str | bytes, name: str = "patients.csv", token: str | None = None):
    body = csv_text.encode() if isinstance(csv_text, str) else csv_text
    return client.post(
        f"{DETAIL}/import", data={"csrf_token": token if token is not None else csrf_of(client, DETAIL)},
        files={"file": (name, body, "text/csv")}, follow_redirects=False,
    )  # fmt: skip


def test_the_list_counts_patients_by_where_they_stand(console):
    page = console.client("nurse").get("/console/campaigns")
    assert page.status_code == 200
    row = re.search(rf'<tr data-campaign-id="{CAMPAIGN}">(.*?)</tr>', page.text, re.S).group(1)
    numbers = [int(n) for n in re.findall(r'<td class="n">(?:<span class="flag">)?(\d+)', row)]
    # patients, due, in progress, completed, failed, no answer, escalated
    assert numbers == [5, 2, 0, 2, 1, 0, 1]
    assert "Cardiology December" in row and "09:00–20:00" in row and "Asia/Shanghai" in row and "active" in row
    assert f'href="/console/campaigns/{CAMPAIGN}"' in row
    assert "New campaign" not in page.text, "nurses see campaigns but do not create them"
    assert "New campaign" in console.client("admin").get("/console/campaigns").text


def test_campaign_page_masks_numbers_and_links_attempts_to_their_calls(console):
    page = console.client("nurse").get(DETAIL)
    assert page.status_code == 200
    text = page.text
    for n in range(1, 6):
        assert f"+861380000000{n}" not in text and f"138 0000 000{n}" not in text
        assert f"+*********000{n}" in text  # every digit but the last four hidden
    wang_row = r'<tr data-contact-id="\d+"[^>]*>\s*<td class="patient-name">&lt;img(.*?)</tr>'
    wang = re.search(wang_row, text, re.S).group(1)
    assert wang.count('class="attempt"') == 2
    assert "no answer" in wang and "completed" in wang
    assert 'href="/console/calls/quiet-followup"' in wang
    li = re.search(r"Li Lei</td>(.*?)</tr>", text, re.S).group(1)
    assert "busy" in li and "SIP 486" in li and "(retry 2 of 2)" in li and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", li)
    zhao = re.search(r'<td class="patient-name">Zhao Min(.*?)</tr>', text, re.S).group(1)
    assert "escalated" in zhao and f'href="/console/calls/{XSS_CALL}"' in zhao
    assert "not called yet" in re.search(r"Chen Jie</td>(.*?)</tr>", text, re.S).group(1)
    assert re.search(r"Sun Li</td>.*?attempts used up.*?failed.*?failed", text, re.S)
    assert f'href="/console/?campaign={CAMPAIGN}"' in text  # its calls in the review queue
    assert "Import patients" not in text and "Pause dialling" not in text  # admin only
    assert console.client("nurse").get("/console/campaigns/nope").status_code == 404


@pytest.mark.parametrize(
    ("outcome", "shown"),
    [
        ("completed", {"Zhao Min", "Wang Fang"}),
        ("busy", {"Li Lei"}),
        ("failed", {"Sun Li"}),
        ("none", {"Chen Jie"}),
        ("no-answer", set()),
        ("bogus", {"Wang Fang", "Li Lei", "Zhao Min", "Sun Li", "Chen Jie"}),
    ],
)
def test_filter_by_last_outcome(console, outcome, shown):
    text = console.client("nurse").get(DETAIL, params={"outcome": outcome}).text
    names = {n for n in ("Wang Fang", "Li Lei", "Zhao Min", "Sun Li", "Chen Jie") if f"{n}</td>" in text or
             f"{n} <span" in text}  # fmt: skip
    assert names == shown
    if not shown:
        assert "No patients with this outcome" in text


def test_a_patients_markup_is_shown_as_text(console):
    for path in (DETAIL, "/console/campaigns"):
        console.client("nurse").get(path)
    text = console.client("nurse").get(DETAIL).text
    assert XSS_PATIENT not in text and str(escape(XSS_PATIENT)) in text
    assert "<img" not in text and text.count("<script") == 1


def test_the_queue_and_call_page_link_to_the_campaign(console):
    nurse = console.client("nurse")
    queue = nurse.get("/console/", params={"campaign": CAMPAIGN}).text
    assert 'id="campaign-link">campaign page' in queue and f'href="/console/campaigns/{CAMPAIGN}"' in queue
    assert f'<a href="/console/campaigns/{CAMPAIGN}" class="campaign">' in nurse.get("/console/").text
    assert f'href="/console/campaigns/{CAMPAIGN}"' in nurse.get("/console/calls/quiet-followup").text


POSTS = [
    ("/console/campaigns", {"name": "Ortho"}),
    (f"{DETAIL}/pause", {}),
    (f"{DETAIL}/resume", {}),
    (f"{DETAIL}/import", {}),
]


@pytest.mark.parametrize(("path", "form"), POSTS, ids=[p for p, _ in POSTS])
@pytest.mark.parametrize("token", ["missing", "wrong", "other-session"])
def test_campaign_posts_need_the_sessions_csrf_token(console, path, form, token):
    admin = console.client("admin")
    data = dict(form)
    if token == "wrong":
        data["csrf_token"] = "0" * 64
    elif token == "other-session":
        data["csrf_token"] = csrf_of(console.client("admin"))
    files = {"file": ("p.csv", b"name,phone\nNew,+8613900000009\n", "text/csv")} if path.endswith("import") else None
    r = admin.post(path, data=data, files=files, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    with console.services.database.session() as s:
        assert s.query(Campaign).count() == 1 and s.get(Campaign, CAMPAIGN).status == "active"
    assert contacts(console) == 5


def test_import_errors_name_their_lines_and_nothing_is_imported(console):
    admin = console.client("admin")
    bad = (
        "name,phone,language,discharge_date\n"
        "Good One,+8613900000001,zh,2026-11-01\n"
        "Bad Phone,12345,zh,\n"
        ",+8613900000003,zh,\n"
        "Wrong Lang,+8613900000004,fr,\n"
        "Bad Date,+8613900000005,en,01/11/2026\n"
        "Dup,+8613800000002,zh,\n"
    )
    r = upload(admin, bad)
    assert r.status_code == 400
    errors = re.search(r'id="import-errors".*?</section>', r.text, re.S).group(0)
    assert "Nothing was imported" in errors
    assert "line 3: invalid phone number (not E.164)" in errors
    assert "line 4: no name" in errors
    assert "line 5: language must be zh or en" in errors
    assert "line 6: discharge_date is not YYYY-MM-DD" in errors
    assert "line 7: duplicate phone number in this campaign" in errors
    assert "line 2" not in errors and "12345" not in errors.replace("line", "")
    assert contacts(console) == 5, "the good row was not imported either"
    for text, message in [
        ("first,last\nA,B\n", "CSV needs the columns name, phone"),
        ("", "CSV needs the columns name, phone"),
        ("name,phone\n", "no patient rows"),
        ("name,phone\nA,+8613900000001\n".encode("utf-16"), "not UTF-8"),
    ]:
        r = upload(admin, text)
        assert r.status_code == 400 and message in r.text, (message, r.text[:2000])
    r = admin.post(f"{DETAIL}/import", data={"csrf_token": csrf_of(admin, DETAIL)}, follow_redirects=False)
    assert r.status_code == 400 and "Choose a CSV file" in r.text
    assert contacts(console) == 5
    rejected = [d for u, a, d in actions(console) if a == "campaign_import_rejected"]
    assert rejected[0]["campaign"] == CAMPAIGN and "line 3: invalid phone number (not E.164)" in rejected[0]["errors"]
    assert not any("+86139" in str(d) for d in rejected), "no phone numbers in the audit log"


def test_admin_imports_a_valid_file(console):
    admin = console.client("admin")
    r = upload(admin, "\ufeffname,phone,language\n张伟,139 0000 0001,zh\nAnn Lee,+44 20 7946 0958,en\n")
    assert r.status_code == 303 and r.headers["location"] == f"{DETAIL}?imported=2"
    page = admin.get(r.headers["location"]).text
    assert "Imported 2 patients." in page and "张伟" in page and "+*********0001" in page
    assert contacts(console) == 7
    assert ("ada", "campaign_import", {"campaign": CAMPAIGN, "file": "patients.csv", "imported": 2}) in actions(console)


def test_admin_creates_a_campaign_and_bad_fields_are_explained(console):
    admin = console.client("admin")
    token = csrf_of(admin, "/console/campaigns")
    for form, message in [
        ({"name": " "}, "needs a name"),
        ({"name": "X", "window_start": "25:00"}, "HH:MM"),
        ({"name": "X", "max_attempts": "0"}, "1 to 10"),
        ({"name": "X", "channel": "fax"}, "Channel is sip"),
        ({"name": "X", "timezone": "Mars/Olympus"}, "Unknown time zone"),
    ]:
        r = admin.post("/console/campaigns", data={"csrf_token": token, **form})
        assert r.status_code == 400 and message in r.text, message
    with console.services.database.session() as s:
        assert s.query(Campaign).count() == 1
    r = admin.post("/console/campaigns", data={
        "csrf_token": token, "name": "<b>Ortho</b> January", "timezone": "Europe/London", "window_start": "10:00",
        "window_end": "18:30", "max_attempts": "4", "backoff_minutes": "60", "channel": "carrier",
    }, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    new_id = r.headers["location"].rsplit("/", 1)[1]
    with console.services.database.session() as s:
        c = s.get(Campaign, new_id)
        assert (c.timezone, c.window_start, c.window_end, c.max_attempts, c.retry_backoff_s, c.channel) == (
            "Europe/London", "10:00", "18:30", 4, 3600, "carrier")  # fmt: skip
    listing = admin.get("/console/campaigns").text
    assert "&lt;b&gt;Ortho&lt;/b&gt; January" in listing and "10:00–18:30" in listing
    assert ("ada", "campaign_create", {"campaign": new_id, "name": "<b>Ortho</b> January", "channel": "carrier"}) in (
        actions(console)
    )


def test_pause_stops_dialling_and_resume_restarts_it(console):
    admin = console.client("admin")
    engine = console.services.database.engine
    token = csrf_of(admin, DETAIL)
    r = admin.post(f"{DETAIL}/pause", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == DETAIL
    page = admin.get(DETAIL).text
    assert 'id="campaign-status">paused' in page and "Resume dialling" in page
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(days=2)
    assert claim_due(engine, "w1", now=later, limit=5) == [], "a paused campaign is never dialled"
    admin.post(f"{DETAIL}/resume", data={"csrf_token": token})
    assert 'id="campaign-status">active' in admin.get(DETAIL).text
    assert len(claim_due(engine, "w1", now=later, limit=5)) == 2  # Li Lei's retry and Chen Jie
    log = [(a, d) for u, a, d in actions(console) if u == "ada" and a.startswith("campaign_")]
    assert log == [
        ("campaign_pause", {"campaign": CAMPAIGN, "from": "active", "to": "paused"}),
        ("campaign_resume", {"campaign": CAMPAIGN, "from": "paused", "to": "active"}),
    ]


def test_every_campaign_view_is_audited(console):
    nurse = console.client("nurse")
    nurse.get("/console/campaigns")
    nurse.get(DETAIL, params={"outcome": "busy"})
    log = [(u, a, d) for u, a, d in actions(console) if a.startswith("view_campaign")]
    assert log == [
        ("nina", "view_campaigns", {}),
        ("nina", "view_campaign", {"campaign": CAMPAIGN, "outcome": "busy", "page": 0}),
    ]
    audit = console.client("admin").get("/console/audit").text
    assert "view_campaign" in audit and "nina" in audit
